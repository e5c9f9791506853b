"""Security settings become the same cluster access for librdkafka and for aiokafka (Faust),
and only errors no retry can fix stop a client."""

from __future__ import annotations

import ssl

import pytest
from confluent_kafka import KafkaError

from connectors.aiokafka_config import OidcTokenProvider, aiokafka_config, faust_credentials, ssl_context
from connectors.kafka_config import (KafkaAuthenticationError, auth_failure, client_config,
                                     consumer_config, raise_on_auth_failure, security_config,
                                     transactional_config)
from geoflux.errors import ConfigurationError
from geoflux.settings import KafkaSettings


def settings(**kw) -> KafkaSettings:
    return KafkaSettings(bootstrap="b1:9093,b2:9093", **kw)


@pytest.fixture
def ca_file(tmp_path):
    """A CA bundle ssl can load (the system's), so contexts are built for real."""
    path = tmp_path / "ca.pem"
    path.write_bytes(open(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt",
                          "rb").read())
    return path


def test_plaintext_is_the_default_and_carries_no_secrets():
    cfg = client_config(settings())
    assert cfg["security.protocol"] == "PLAINTEXT" and cfg["bootstrap.servers"] == "b1:9093,b2:9093"
    assert not any(k.startswith(("sasl.", "ssl.")) for k in cfg)
    assert aiokafka_config(settings()) == {"bootstrap_servers": "b1:9093,b2:9093",
                                           "security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings()) is None


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512"])
def test_sasl_ssl_maps_to_both_clients(mech, ca_file):
    s = settings(security_protocol="sasl_ssl", sasl_mechanism=mech, sasl_username="u",
                 sasl_password="p", ssl_ca_location=ca_file)
    cfg = security_config(s)
    assert cfg == {"security.protocol": "SASL_SSL", "sasl.mechanisms": mech.upper(),
                   "sasl.username": "u", "sasl.password": "p", "ssl.ca.location": str(ca_file),
                   "ssl.endpoint.identification.algorithm": "https"}
    # every role starts from the same security settings
    for role in (consumer_config(s, "g"), transactional_config(s, "tx")):
        assert {k: role[k] for k in cfg} == cfg
    aio = aiokafka_config(s)
    assert aio["security_protocol"] == "SASL_SSL" and aio["sasl_mechanism"] == mech.upper()
    assert (aio["sasl_plain_username"], aio["sasl_plain_password"]) == ("u", "p")
    assert aio["ssl_context"].check_hostname and aio["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    creds = faust_credentials(s)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == mech.upper()
    assert (creds.username, creds.password) == ("u", "p")


def test_ssl_without_hostname_check_and_sasl_plaintext(ca_file):
    s = settings(security_protocol="SSL", ssl_ca_location=ca_file, ssl_verify_hostname=False)
    assert security_config(s)["ssl.endpoint.identification.algorithm"] == "none"
    assert ssl_context(s).check_hostname is False
    assert faust_credentials(s).protocol.value == "SSL"
    plain = settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                     sasl_password="p")
    assert "ssl_context" not in aiokafka_config(plain)
    assert faust_credentials(plain).protocol.value == "SASL_PLAINTEXT"


def test_oauthbearer_maps_to_oidc_on_both_clients():
    s = settings(security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", sasl_username="client",
                 sasl_password="secret", sasl_oauthbearer_token_endpoint_url="https://idp/token",
                 sasl_oauthbearer_scope="kafka")
    cfg = security_config(s)
    assert cfg["sasl.oauthbearer.method"] == "oidc"
    assert cfg["sasl.oauthbearer.client.id"] == "client" and cfg["sasl.oauthbearer.scope"] == "kafka"
    provider = aiokafka_config(s)["sasl_oauth_token_provider"]
    assert isinstance(provider, OidcTokenProvider)
    assert (provider.endpoint, provider.client_id, provider.client_secret, provider.scope) == (
        "https://idp/token", "client", "secret", "kafka")
    creds = faust_credentials(s)
    assert isinstance(creds.oauth_cb, OidcTokenProvider) and creds.mechanism.value == "OAUTHBEARER"
    assert creds.protocol.value == "SASL_SSL"


def test_oidc_tokens_are_fetched_by_client_credentials_and_cached():
    """Against a local token endpoint (a stand-in for the identity provider)."""
    import asyncio

    from aiohttp import web

    from services.devstack.local_process import free_port

    forms = []

    async def token(request):
        form = dict(await request.post())
        forms.append(form)
        if form["client_secret"] != "secret":
            return web.json_response({"error": "invalid_client"}, status=401)
        return web.json_response({"access_token": f"tok-{len(forms)}", "expires_in": 3600})

    async def scenario():
        app = web.Application()
        app.router.add_post("/token", token)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            url = f"http://127.0.0.1:{port}/token"
            good = OidcTokenProvider(url, "client", "secret", "kafka")
            first, again = await good.token(), await good.token()
            with pytest.raises(ConfigurationError, match="refused client 'client'"):
                await OidcTokenProvider(url, "client", "wrong").token()
            return first, again
        finally:
            await runner.cleanup()

    first, again = asyncio.run(scenario())
    assert first == again == "tok-1"  # cached: one request for both
    assert forms[0] == {"grant_type": "client_credentials", "client_id": "client",
                        "client_secret": "secret", "scope": "kafka"}


@pytest.mark.parametrize("kw, message", [
    ({"security_protocol": "TLS"}, "use one of PLAINTEXT, SSL"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "use one of PLAIN"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "needs GEOFLUX_KAFKA_SASL_USERNAME"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}, "TOKEN_ENDPOINT_URL"),
])
def test_bad_mixes_are_refused_for_both_clients(kw, message):
    with pytest.raises(ConfigurationError, match=message):
        client_config(settings(**kw))
    with pytest.raises(ConfigurationError, match=message):
        aiokafka_config(settings(**kw))


REFUSED = ("sasl_ssl://127.0.0.1:1/bootstrap: SASL authentication error: Authentication failed "
           "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256")
CUT_OFF = ("TxnCoordinator: 127.0.0.1:1: SASL authentication error: SaslAuthenticateRequest "
           "failed: Local: Broker transport failure (after 0ms in state DOWN)")
UNTRUSTED = ("sasl_ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A000086:SSL "
             "routines::certificate verify failed: broker certificate could not be verified")


@pytest.mark.parametrize("code, text, final", [
    (KafkaError._AUTHENTICATION, REFUSED, "Kafka authentication failed at b:1"),
    (KafkaError.SASL_AUTHENTICATION_FAILED, "Authentication failed: Invalid username or password",
     "Kafka authentication failed"),
    (KafkaError._SSL, UNTRUSTED, "Kafka TLS failed at b:1"),
    # a connection cut during the exchange (a loaded machine) is reported with the same code
    (KafkaError._AUTHENTICATION, CUT_OFF, None),
    (KafkaError._SSL, "SSL handshake failed: Disconnected: connection reset", None),
    (KafkaError._TRANSPORT, "Connection refused", None),
    (KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down", None),
])
def test_only_refusals_stop_a_client(code, text, final):
    failure = auth_failure(KafkaError(code, text), "b:1")
    if final is None:
        assert failure is None
        raise_on_auth_failure("b:1")(KafkaError(code, text))  # returns: librdkafka retries
    else:
        assert isinstance(failure, KafkaAuthenticationError) and str(failure).startswith(final)
        assert failure.error_class == "authentication"
        with pytest.raises(KafkaAuthenticationError):
            raise_on_auth_failure("b:1")(KafkaError(code, text))


def test_every_client_config_carries_the_error_callback():
    cfg = consumer_config(settings(), "g")
    with pytest.raises(KafkaAuthenticationError):
        cfg["error_cb"](KafkaError(KafkaError._AUTHENTICATION, REFUSED))
    assert client_config(settings(), error_cb=print)["error_cb"] is print  # a caller may replace it


def test_every_librdkafka_client_starts_over_from_the_bootstrap_list_within_seconds():
    """A broker back from a pause answers metadata without itself for a moment; the client
    then knows no broker at all until it re-bootstraps (librdkafka's default: 5 minutes). The
    real client classes are built from each config, so a key this librdkafka does not know
    fails here, not at a worker's start."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    from connectors.kafka_config import REBOOTSTRAP_AFTER_MS, admin_config, producer_config
    built = [(Consumer, consumer_config(settings(), "g")), (Producer, producer_config(settings())),
             (Producer, transactional_config(settings(), "t")), (AdminClient, admin_config(settings()))]
    for cls, cfg in built:
        assert cfg["metadata.recovery.rebootstrap.trigger.ms"] == REBOOTSTRAP_AFTER_MS <= 10_000
        cls(cfg)


def test_a_transactional_producer_retries_a_refused_transaction_start_within_milliseconds():
    """The coordinator refuses a transaction begun while it writes the last one's markers;
    librdkafka's 100 ms default back-off was most of a quiet stage's round trip. An override
    still wins, and the real Producer accepts the result."""
    from confluent_kafka import Producer

    from connectors.kafka_config import TXN_RETRY_BACKOFF_MS
    cfg = transactional_config(settings(), "t")
    assert cfg["retry.backoff.ms"] == TXN_RETRY_BACKOFF_MS < 100
    assert transactional_config(settings(), "t", **{"retry.backoff.ms": 50})["retry.backoff.ms"] == 50
    Producer(cfg)


def test_no_kafka_client_is_configured_by_hand():
    """Product code and benchmarks build clients only from connectors/kafka_config.py (or its
    aiokafka twin): a literal configuration would miss the security settings."""
    import re
    from pathlib import Path

    root = Path(__file__).parents[2]
    literal = re.compile(r"\b(Consumer|Producer|AdminClient)\(\s*\{|[\"']bootstrap\.servers[\"']")
    offenders = []
    for folder in ("connectors", "streams", "services", "schemas", "geoflux", "benchmarks"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "kafka_config.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if literal.search(line):
                    offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def _local(tmp_path, **kw):
    from geoflux.settings import LocalKafkaSettings
    from services.devstack.local_kafka import LocalKafka

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nQUJD\nREVG\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nR0hJ\n-----END PRIVATE KEY-----\n")
    base = {"data_dir": tmp_path, "port": 1, "controller_port": 2, "sasl_ssl_port": 3,
            "scram_users": {"svc": "pw"}, "ssl_certificate": cert, "ssl_key": key}
    return LocalKafka(LocalKafkaSettings(**{**base, **kw})), key


def test_local_broker_sasl_ssl_listener_properties(tmp_path):
    broker, _ = _local(tmp_path, sasl_mechanism="SCRAM-SHA-512")
    props = broker._properties()
    assert "listeners=PLAINTEXT://127.0.0.1:1,SASL_SSL://127.0.0.1:3,CONTROLLER://127.0.0.1:2" in props
    assert "advertised.listeners=PLAINTEXT://127.0.0.1:1,SASL_SSL://127.0.0.1:3\n" in props
    assert "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512" in props
    assert "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=" in props
    # the PEM is one properties value continued over lines
    assert "ssl.keystore.certificate.chain=-----BEGIN CERTIFICATE----- \\\nQUJD \\\nREVG \\\n-----END" in props
    assert broker._scram_args() == ["--add-scram=SCRAM-SHA-512=[name=svc,password=pw]"]
    plain, _ = _local(tmp_path, sasl_ssl_port=0)
    assert "SASL_SSL://" not in plain._properties() and plain._scram_args() == []


@pytest.mark.parametrize("change, message", [
    ({"sasl_mechanism": "PLAIN"}, "offers SCRAM-SHA-256 or SCRAM-SHA-512"),
    ({"ssl_certificate": None}, "needs GEOFLUX_LOCAL_KAFKA_SSL_CERTIFICATE"),
    ({"scram_users": {"svc": "a,b"}}, "cannot hold"),
])
def test_local_broker_refuses_what_it_cannot_serve(tmp_path, change, message):
    broker, _ = _local(tmp_path, **change)
    with pytest.raises(ConfigurationError, match=message):
        broker._properties()
        broker._scram_args()


def test_local_broker_refuses_an_encrypted_key(tmp_path):
    broker, key = _local(tmp_path)
    key.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nR0hJ\n-----END ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(ConfigurationError, match="unencrypted PKCS#8"):
        broker._properties()

