"""docker-compose.kafka.yml cannot run here (no Docker engine); it must still agree with the
settings module: published ports are our defaults, every GEOFLUX_* variable is a real setting."""

from pathlib import Path

import yaml

from geoflux import settings as s

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.kafka.yml").read_text())
SECTIONS = [s.KafkaSettings, s.LocalKafkaSettings, s.RegistrySettings, s.ApiSettings,
            s.PostgresSettings, s.GeofenceSettings, s.StreamSettings, s.LocalRegistrySettings,
            s.MetricsSettings]


def known_env_vars() -> set[str]:
    return {(cls.model_config["env_prefix"] + name).upper()
            for cls in SECTIONS for name in cls.model_fields}


def host_port(service: str) -> int:
    [mapping] = COMPOSE["services"][service]["ports"]
    return int(mapping.split(":")[1])


def test_published_ports_are_the_settings_defaults():
    assert f"127.0.0.1:{host_port('kafka')}" == s.KafkaSettings().bootstrap
    assert host_port("registry") == s.LocalRegistrySettings().port
    assert host_port("api") == s.ApiSettings().port
    assert f":{host_port('postgis')}/" in s.PostgresSettings().dsn


def test_every_geoflux_variable_is_a_setting():
    used = {k for svc in COMPOSE["services"].values()
            for k in (svc.get("environment") or {}) if k.startswith("GEOFLUX_")}
    assert used and used <= known_env_vars(), used - known_env_vars()


def test_kafka_has_single_node_transaction_settings():
    env = COMPOSE["services"]["kafka"]["environment"]
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_api_listens_where_it_is_published():
    api = COMPOSE["services"]["api"]
    assert api["environment"]["GEOFLUX_API_PORT"] == api["ports"][0].split(":")[-1]
