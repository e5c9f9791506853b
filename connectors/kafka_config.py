"""Every Kafka client's configuration, built in one place from `KafkaSettings`.

Producers, consumers, admin clients and transactional producers all start from
`client_config`, which carries the bootstrap address and the cluster's security settings
(`security.protocol`, SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512 / OAUTHBEARER, TLS CA and
client certificate). A stage adds only what its role needs (group, isolation, transactions);
nobody writes `bootstrap.servers` by hand, so a secured cluster is one set of variables away.
"""

from __future__ import annotations

from confluent_kafka import KafkaError

from geoflux.errors import ConfigurationError
from geoflux.settings import KafkaSettings

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
REBOOTSTRAP_AFTER_MS = 10_000
TXN_RETRY_BACKOFF_MS = 10


def security_config(s: KafkaSettings) -> dict:
    """librdkafka's security keys for the configured protocol; a clear error for a bad mix."""
    protocol = s.security_protocol.upper()
    if protocol not in PROTOCOLS:
        raise ConfigurationError(f"GEOFLUX_KAFKA_SECURITY_PROTOCOL {s.security_protocol!r}: use one "
                                 f"of {', '.join(PROTOCOLS)}")
    cfg: dict = {"security.protocol": protocol}
    if protocol.startswith("SASL"):
        mech = (s.sasl_mechanism or "").upper()
        if mech not in SASL_MECHANISMS:
            raise ConfigurationError(f"GEOFLUX_KAFKA_SASL_MECHANISM {s.sasl_mechanism!r}: use one of "
                                     f"{', '.join(SASL_MECHANISMS)}")
        cfg["sasl.mechanisms"] = mech
        if mech == "OAUTHBEARER":
            if not s.sasl_oauthbearer_token_endpoint_url:
                raise ConfigurationError("OAUTHBEARER needs GEOFLUX_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL")
            cfg.update({
                "sasl.oauthbearer.method": "oidc",
                "sasl.oauthbearer.token.endpoint.url": s.sasl_oauthbearer_token_endpoint_url,
                "sasl.oauthbearer.client.id": s.sasl_username or "",
                "sasl.oauthbearer.client.secret": _secret(s.sasl_password),
            })
            if s.sasl_oauthbearer_scope:
                cfg["sasl.oauthbearer.scope"] = s.sasl_oauthbearer_scope
        else:
            if not s.sasl_username:
                raise ConfigurationError(f"SASL {mech} needs GEOFLUX_KAFKA_SASL_USERNAME and _PASSWORD")
            cfg["sasl.username"] = s.sasl_username
            cfg["sasl.password"] = _secret(s.sasl_password)
    if protocol.endswith("SSL"):
        for key, value in (("ssl.ca.location", s.ssl_ca_location),
                           ("ssl.certificate.location", s.ssl_certificate_location),
                           ("ssl.key.location", s.ssl_key_location)):
            if value:
                cfg[key] = str(value)
        if s.ssl_key_password is not None:
            cfg["ssl.key.password"] = _secret(s.ssl_key_password)
        cfg["ssl.endpoint.identification.algorithm"] = "https" if s.ssl_verify_hostname else "none"
    return cfg


def _secret(value) -> str:
    return value.get_secret_value() if value is not None else ""


class KafkaAuthenticationError(ConfigurationError):
    """The cluster refused our credentials or we refused its certificate. librdkafka retries
    these for ever and only reports them to the error callback; no retry can fix them."""

    error_class = "authentication"


# librdkafka codes that mean "the operator must fix a setting", not "the broker is away"
_AUTH_CODES = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}


def auth_failure(err: KafkaError, bootstrap: str) -> KafkaAuthenticationError | None:
    """The error to stop on for `err`, or None when retrying may help. librdkafka reports a
    connection lost or timed out during the SASL exchange with the same `_AUTHENTICATION` code
    as a refusal ("SaslAuthenticateRequest failed: Local: Broker transport failure", seen on a
    loaded machine); only the broker's own refusal is final, and its text has no "Local:". A
    TLS handshake fails with the generic `_SSL` code; only a certificate verification failure
    is final."""
    text = err.str()
    refused = err.code() in _AUTH_CODES and "Local:" not in text
    if refused or (err.code() == KafkaError._SSL and "certificate verify failed" in text):
        what = "TLS" if err.code() == KafkaError._SSL else "authentication"
        return KafkaAuthenticationError(f"Kafka {what} failed at {bootstrap}: {err.str()} (check "
                                        "GEOFLUX_KAFKA_SECURITY_PROTOCOL, _SASL_* and _SSL_* settings)")
    return None


def raise_on_auth_failure(bootstrap: str):
    """An `error_cb`: raised from the client's poll/consume/flush, so a worker whose
    credentials are refused stops with the reason instead of retrying silently."""
    def error_cb(err: KafkaError) -> None:
        failure = auth_failure(err, bootstrap)
        if failure is not None:
            raise failure
    return error_cb


def client_config(s: KafkaSettings, **overrides) -> dict:
    """What every client shares: where the cluster is and how to authenticate to it."""
    cfg = {"bootstrap.servers": s.bootstrap, "socket.connection.setup.timeout.ms": 5000,
           # A broker that was paused past its controller session comes back fenced, and for a
           # moment its metadata lists no brokers, itself included. The client then forgets
           # every broker it knew and, by default, finds them again from bootstrap.servers only
           # after 5 minutes: a worker that saw that answer took no work for minutes after the
           # broker was healthy (its group coordinator unknown, its commits queued). 10 s
           # without a usable broker is enough to start over from the bootstrap list.
           "metadata.recovery.rebootstrap.trigger.ms": REBOOTSTRAP_AFTER_MS,
           # warnings and errors only: informational lines would break one-line CLI errors
           "log_level": 4, "error_cb": raise_on_auth_failure(s.bootstrap), **security_config(s)}
    cfg.update(overrides)
    return cfg


def producer_config(s: KafkaSettings, **overrides) -> dict:
    """Idempotent, all replicas, Java-compatible partitioning (a key lands on the partition a
    Java producer would choose)."""
    return client_config(s, **{
        "enable.idempotence": True, "acks": "all", "linger.ms": 2, "compression.type": "lz4",
        "delivery.timeout.ms": 120_000, "partitioner": "murmur2_random", **overrides})


def transactional_config(s: KafkaSettings, transactional_id: str, **overrides) -> dict:
    cfg = producer_config(s, **{"transactional.id": transactional_id, "linger.ms": 1,
                                "transaction.timeout.ms": 15_000,
                                # A transaction begun just after a commit finds the coordinator
                                # still writing the last one's markers: its AddOffsetsToTxn is
                                # refused (CONCURRENT_TRANSACTIONS) and retried after this
                                # back-off, doubling up to retry.backoff.max.ms. librdkafka's
                                # 100 ms default was most of a quiet stage's round trip.
                                "retry.backoff.ms": TXN_RETRY_BACKOFF_MS, **overrides})
    # a record may not outlive its transaction: librdkafka refuses a longer delivery timeout
    cfg["delivery.timeout.ms"] = min(cfg["delivery.timeout.ms"], cfg["transaction.timeout.ms"])
    return cfg


def consumer_config(s: KafkaSettings, group: str, **overrides) -> dict:
    """A consumer that commits explicitly and reads only committed records."""
    return client_config(s, **{"group.id": group, "enable.auto.commit": False,
                               "isolation.level": "read_committed",
                               "auto.offset.reset": "earliest", **overrides})


def log_end_config(s: KafkaSettings, group: str) -> dict:
    """A client asked only where partitions end: the log's end (the high watermark), not the
    stable end a read_committed client is told. The two differ while a transaction is open,
    including one that has committed but whose markers are not written yet."""
    return consumer_config(s, group, **{"isolation.level": "read_uncommitted"})


def admin_config(s: KafkaSettings, **overrides) -> dict:
    return client_config(s, **overrides)
