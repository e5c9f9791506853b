"""The local broker's extra JVM options (GEOFLUX_LOCAL_KAFKA_JVM_OPTIONS) reach its command line
after geoflux's own flags, so an option given there wins, and before the class path."""

from geoflux.settings import LocalKafkaSettings
from services.devstack.local_kafka import JVM_FLAGS, LocalKafka


def command(monkeypatch, tmp_path, options: str | None) -> list[str]:
    if options is None:
        monkeypatch.delenv("GEOFLUX_LOCAL_KAFKA_JVM_OPTIONS", raising=False)
    else:
        monkeypatch.setenv("GEOFLUX_LOCAL_KAFKA_JVM_OPTIONS", options)
    return LocalKafka(LocalKafkaSettings(data_dir=tmp_path))._java("kafka.Kafka", "server.properties")


def test_options_from_the_environment_follow_the_own_flags(monkeypatch, tmp_path):
    cmd = command(monkeypatch, tmp_path, "-XX:TieredStopAtLevel=1 -Dgeoflux.note='a b'")
    last_own = cmd.index(JVM_FLAGS[-1])
    assert cmd[last_own + 1:last_own + 3] == ["-XX:TieredStopAtLevel=1", "-Dgeoflux.note=a b"]
    assert cmd.index("-cp") > last_own + 2 and cmd[-2:] == ["kafka.Kafka", "server.properties"]


def test_without_options_the_command_is_the_own_flags_alone(monkeypatch, tmp_path):
    cmd = command(monkeypatch, tmp_path, None)
    assert not any("TieredStopAtLevel" in arg for arg in cmd)
    assert cmd[cmd.index(JVM_FLAGS[-1]) + 1].startswith("-Dkafka.logs.dir=")
