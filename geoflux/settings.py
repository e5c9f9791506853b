"""One settings object per component, each read from `GEOFLUX_*` environment variables.

Every field's env var is its section prefix plus the field name in capitals, e.g.
`GEOFLUX_KAFKA_BOOTSTRAP`. Defaults suit one machine; production changes partitions and
replication (3) through the same variables.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _section(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="ignore")


class KafkaSettings(BaseSettings):
    """Where the cluster is and how our topics are shaped (`GEOFLUX_KAFKA_*`)."""

    model_config = _section("GEOFLUX_KAFKA_")

    bootstrap: str = "127.0.0.1:9092"
    partitions: int = 6
    replication: int = 1
    min_insync_replicas: int = 1
    location_retention_days: int = 30
    event_retention_days: int = 30
    topic_prefix: str = ""  # isolates test runs and tenants of one cluster
    request_timeout_s: float = 15.0
    # a worker whose consumer has not been a steady member of its group for this long (or has
    # not been polled) exits for its supervisor to start it again (streams/runtime/group_health.py);
    # twice the longest rebalance (max.poll.interval.ms, 300 s): a broker outage followed by a
    # rebalance that waits out a stuck member must not end the members that are well
    group_stall_s: float = 600.0
    # security (connectors/kafka_config.py turns these into every client's configuration):
    # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 | OAUTHBEARER
    sasl_username: str | None = None  # OAUTHBEARER: the OIDC client id
    sasl_password: SecretStr | None = None  # OAUTHBEARER: the OIDC client secret
    sasl_oauthbearer_token_endpoint_url: str | None = None
    sasl_oauthbearer_scope: str | None = None
    ssl_ca_location: Path | None = None  # PEM file of the CA that signed the brokers' certificates
    ssl_certificate_location: Path | None = None  # client certificate (mutual TLS)
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_verify_hostname: bool = True


class LocalKafkaSettings(BaseSettings):
    """The single-node KRaft broker that `geoflux kafka start` runs (`GEOFLUX_LOCAL_KAFKA_*`)."""

    model_config = _section("GEOFLUX_LOCAL_KAFKA_")

    version: str = "4.1.1"
    cache_dir: Path = Path.home() / ".cache" / "geoflux"
    data_dir: Path = Path.home() / ".local" / "share" / "geoflux" / "kafka"
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    # more JVM options, space-separated, after geoflux's own. `-XX:TieredStopAtLevel=1` (the
    # quick JIT compiler only) trades peak speed for far less compiling CPU: a broker that
    # lives minutes, as each of the test suite's does, then uses half the CPU
    jvm_options: str = ""
    start_timeout_s: float = 120.0  # a loaded 2-core machine can take a minute
    stop_timeout_s: float = 30.0
    fetch_timeout_s: float = 600.0
    # An optional SASL_SSL listener beside the plain one, for trying secured-cluster settings
    # on one machine. Off while `sasl_ssl_port` is 0. Users are SCRAM credentials created when
    # the data dir is first formatted (KRaft keeps them in its metadata log); the certificate
    # and its unencrypted PKCS#8 key are PEM files, written into the broker's config.
    sasl_ssl_port: int = 0
    sasl_mechanism: str = "SCRAM-SHA-256"  # SCRAM-SHA-256 | SCRAM-SHA-512
    scram_users: dict[str, SecretStr] = {}  # JSON {"name": "password"}
    ssl_certificate: Path | None = None  # the broker's own certificate (clients hold the CA)
    ssl_key: Path | None = None


class RegistrySettings(BaseSettings):
    """Schema registry (`GEOFLUX_SCHEMA_REGISTRY_*`). No URL: registry-less mode, stable ids."""

    model_config = _section("GEOFLUX_SCHEMA_REGISTRY_")

    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = 10.0
    retry_s: float = 30.0  # 5xx, 429 and unreachable are retried with backoff this long
    ca_location: Path | None = None  # PEM CA for an https registry with a private CA
    certificate_location: Path | None = None  # client certificate (mutual TLS)
    key_location: Path | None = None


class StreamSettings(BaseSettings):
    """Local state of the stateful stages (`GEOFLUX_STREAM_*`): one store per changelog
    partition under `data_dir`, with a checkpoint of the changelog offset it reflects, so a
    restart restores only the changelog's tail. RAM holds `cache_entries` decoded states per
    stage plus RocksDB's bounded caches, not the state."""

    model_config = _section("GEOFLUX_STREAM_")

    store: str = "auto"  # auto (rocksdb where rocksdict is installed, else memory) | rocksdb | memory
    data_dir: Path = Path.home() / ".local" / "share" / "geoflux" / "state"
    cache_entries: int = 100_000  # decoded states kept in memory per stage
    rocksdb_block_cache_mb: int = 16  # per store (one store per partition)
    rocksdb_write_buffer_mb: int = 8
    # RocksDB runs without its write-ahead log (the changelog or topic is the durable copy):
    # memtables are written to disk at least this often, which bounds how much of the changelog
    # a restore after a crash replays
    rocksdb_flush_interval_s: float = 30.0
    restore_batch: int = 10_000  # changelog records restored per loop turn (the loop keeps polling)
    # Python's cyclic collector, per worker process: (generation 0, 1, 2) thresholds. Python's
    # default (700, 10, 10) walks the young objects every 700 allocations; a stage allocates a
    # few dicts per record, nearly all freed by reference counting, so at that default the
    # collector took a fifth to a quarter of the evaluator's CPU (benchmarks/evaluator_cpu.py).
    gc_threshold: tuple[int, int, int] = (50_000, 20, 10)
    # Faust app (downstream consumers): its id and guarantee
    app_id: str = "geoflux"
    processing_guarantee: str = "at_least_once"
    web_port: int = 6066
    commit_interval_s: float = 1.0

    def apply_gc_threshold(self) -> None:
        """Sets the cyclic collector's thresholds, as every long-running process (and a benchmark
        that stands in for one) does before it starts."""
        import gc

        gc.set_threshold(*self.gc_threshold)


class AlertSettings(BaseSettings):
    """The alert pipeline (`GEOFLUX_ALERT_*`). Seed defaults: 3 primary attempts 1 s / 2 s
    apart, DLQ retries up to 5 attempts in all, breaker 5 failures / 60 s."""

    model_config = _section("GEOFLUX_ALERT_")

    primary_attempts: int = 3
    primary_backoff_s: tuple[float, ...] = (1.0, 2.0, 4.0)
    total_attempts: int = 5
    dlq_backoff_s: tuple[float, ...] = (30.0, 120.0)
    breaker_failures: int = 5
    breaker_open_s: float = 60.0
    send_timeout_s: float = 10.0
    per_channel_concurrency: int = 32
    max_pending: int = 10_000
    commit_interval_s: float = 0.2
    # how long the router, gate and status stages gather records into one transaction: each
    # transaction costs the broker a commit and a marker per partition, whatever it carries
    batch_wait_s: float = 0.2
    dedup_s: dict[str, int] = {"critical": 300, "high": 600, "warning": 900, "info": 1800}
    rate_per_hour: dict[str, int] = {"critical": 20, "high": 10, "warning": 5, "info": 3}
    rules_file: Path | None = None
    # signs job callbacks (a subscriber may bring its own); no public default: with none set,
    # callbacks are refused with the reason. `geoflux up` generates one into its directory.
    callback_secret: SecretStr = SecretStr("")
    # delivery SLA: created-to-delivered within `within_s` for `target` of alerts (seed Part 7)
    sla_targets: dict[str, dict[str, float]] = {
        "critical": {"within_s": 30, "target": 0.999}, "high": {"within_s": 120, "target": 0.99},
        "warning": {"within_s": 600, "target": 0.99}, "info": {"within_s": 1800, "target": 0.95}}
    sla_window_s: float = 3600.0  # attainment is measured over this trailing window
    sla_min_samples: int = 20  # fewer decided alerts than this never count as a breach
    sla_check_interval_s: float = 30.0
    sla_alert_channels: list[str] = []  # where our own SLA alerts go (never the failing channel)
    platform_tenant: str = "geoflux"  # the tenant our own alerts belong to
    # inbound acknowledgements: PagerDuty v3 webhooks are HMAC-signed with this secret;
    # Opsgenie's outgoing webhooks carry this token in X-Geoflux-Token (Opsgenie cannot sign)
    pagerduty_webhook_secret: SecretStr = SecretStr("")
    opsgenie_webhook_token: SecretStr = SecretStr("")
    callback_secret_file: Path | None = None  # the callback secret in a file (wins over callback_secret)


class JobSettings(BaseSettings):
    """Geoprocessing jobs (`GEOFLUX_JOBS_*`). Seed: 3 attempts with exponential backoff,
    results reused for 7 days, timeouts per process between 5 minutes and 4 hours."""

    model_config = _section("GEOFLUX_JOBS_")

    max_attempts: int = 3
    max_attempts_by_process: dict[str, int] = {}
    backoff_s: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    concurrency: int = 4
    postgis_threshold_vertices: int = 5000  # larger inputs run in PostGIS
    tiers: dict[str, str] = {}  # process -> tier, overriding the size rule
    timeouts_s: dict[str, float] = {}  # process -> timeout
    default_timeout_s: float = 1800.0
    min_timeout_s: float = 300.0
    max_timeout_s: float = 14_400.0
    idempotency_ttl_days: float = 7.0
    sync_wait_s: float = 30.0
    sync_max_vertices: int = 2000
    buffer: int = 64  # requests read ahead; priority orders them
    batch_threshold_bytes: int = 10_000_000  # inputs larger than this run on AWS Batch (if configured)
    # inputs (compact JSON) above this are staged in the object store (GEOFLUX_OBJECT_STORE_URL)
    # and the request on Kafka carries their key: a Kafka record stays far below its ~1 MB limit
    inline_input_bytes: int = 262_144
    # the largest input anyone may send (compact JSON); a tenant's max_input_bytes quota can only
    # lower it. The API's body limit is this plus room for the rest of the execute request.
    max_input_bytes: int = 16 * 1024 * 1024
    # how often the API forgets expired idempotency entries and the worker deletes staged
    # inputs and results older than the idempotency window (file object store; S3: lifecycle)
    sweep_interval_s: float = 300.0
    # the in-process tier's children are long-lived (one per slot); each is replaced after this
    # many jobs, so memory a process leaks does not pile up
    child_max_jobs: int = 1000


class BatchSettings(BaseSettings):
    """The AWS Batch tier (`GEOFLUX_BATCH_*`, connectors/compute/batch.py). No job queue: the
    tier is off. `endpoint_url` points boto3 at another endpoint (moto in tests)."""

    model_config = _section("GEOFLUX_BATCH_")

    job_queue: str | None = None
    job_definition: str = "geoflux-batch"
    bucket: str = "geoflux-jobs"
    prefix: str = "jobs"  # inputs at s3://bucket/prefix/{job_id}/inputs.json, outputs under .../outputs/
    region: str = "us-east-1"
    endpoint_url: str | None = None
    attempts: int = 3  # Batch's own attempts per submit (retryStrategy)
    poll_interval_s: float = 30.0  # DescribeJobs fallback when no SNS/EventBridge event arrives
    manifest_grace_s: float = 120.0  # SUCCEEDED but no result manifest yet: wait this long
    # SNS completion endpoint: the signing certificate must come from a URL matching this
    sns_cert_url_pattern: str = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]+\.pem$"
    sns_topic_arns: list[str] = []  # accepted TopicArns; empty: any
    sns_max_age_s: float = 3600.0  # older signed messages are refused (replay)


class JobAlertSettings(BaseSettings):
    """Jobs raise alerts (`GEOFLUX_JOB_ALERTS_*`, streams/jobs/alerts.py): channels per tenant
    and severity ("*": every tenant not listed), e.g.
    {"acme": {"critical": ["pager"], "high": ["ops-slack"], "warning": ["ops-slack"]}}.
    A tenant with no channels for a severity gets no alert of it."""

    model_config = _section("GEOFLUX_JOB_ALERTS_")

    channels: dict[str, dict[str, list[str]]] = {}
    fallback_channel: dict[str, str] = {}  # tenant -> fallback channel
    critical_priority: int = 8  # the seed's DetermineSeverity: priority >= 8 is critical
    queue_sla_s: dict[str, float] = {}  # process -> longest time queued before an alert
    default_queue_sla_s: float = 300.0
    dedup_window_s: float = 86_400.0  # one alert per job and kind within this window
    tick_interval_s: float = 1.0


class QuotaSettings(BaseSettings):
    """Per-tenant job quotas (`GEOFLUX_QUOTAS_*`): JSON {"tenant": {"concurrent_jobs": 4,
    "submissions_per_minute": 60, "max_input_bytes": 50000000}}, "*" for every other tenant.
    A limit left out (or null) is unlimited."""

    model_config = _section("GEOFLUX_QUOTAS_")

    # default: only the input size is limited (jobs benchmarks submit 1,000 at once); set
    # concurrency and rate per tenant, or for "*"
    tenants: dict[str, dict[str, int | None]] = {"*": {"max_input_bytes": 100_000_000}}
    concurrent_retry_after_s: int = 5  # Retry-After when only the concurrency limit is hit


class LocalRegistrySettings(BaseSettings):
    """Apicurio Registry from Maven Central, Confluent-compatible (`GEOFLUX_LOCAL_REGISTRY_*`).

    Apicurio 3.x needs Java 21+: `java_home` or the newest JDK under /usr/lib/jvm is used.
    """

    model_config = _section("GEOFLUX_LOCAL_REGISTRY_")

    version: str = "3.3.3"
    cache_dir: Path = Path.home() / ".cache" / "geoflux"
    data_dir: Path = Path.home() / ".local" / "share" / "geoflux" / "registry"
    host: str = "127.0.0.1"
    port: int = 8081
    heap: str = "384m"
    java_home: Path | None = None
    start_timeout_s: float = 300.0  # a JVM app: 10-20 s on a quiet machine, minutes on a loaded one
    # where schemas are kept: unset, in memory (tests: a registry per session); a directory, an
    # H2 database file there, so schema ids survive a restart (`geoflux up` sets it: records on
    # the topics carry those ids)
    storage_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/apis/ccompat/v7"


class ApiSettings(BaseSettings):
    """The HTTP API (`GEOFLUX_API_*`)."""

    model_config = _section("GEOFLUX_API_")

    host: str = "127.0.0.1"
    port: int = 8080
    max_batch: int = 1000
    evaluate_timeout_s: float = 10.0
    # API processes sharing the port (SO_REUSEPORT, Linux); each runs the whole API with its
    # own Kafka clients and views. WebSocket tickets are per process: keep 1 for browsers'
    # live streams (a ticket redeemed by another process is refused)
    workers: int = 1
    # API keys as JSON {"key": "tenant" | "*"} ("*": an operator key, every tenant), and/or a
    # file holding the same; with none configured every request is refused (services/api/auth.py)
    keys: str = ""
    keys_file: str | None = None
    # the built console (console/dist); unset: next to the source tree (editable installs)
    console_dir: str | None = None
    # this API's URL as receivers reach it (behind a proxy: the proxy's), e.g.
    # https://geoflux.example.com: voice channels send Twilio's keypress webhook there
    public_url: str | None = None


class ReplaySettings(BaseSettings):
    """Replay by time or offset, POST /api/v1/replay (`GEOFLUX_REPLAY_*`)."""

    model_config = _section("GEOFLUX_REPLAY_")

    # a replay still short of its end offsets after this stops; its summary line says so
    timeout_s: float = 120.0
    # record times are production times, not event times: a time range is scanned this much
    # wider in record time and then filtered exactly on the event time (a request may widen it)
    margin_s: float = 30.0
    max_margin_s: float = 7 * 24 * 3600.0


class GatewaySettings(BaseSettings):
    """The WebSocket gateway at /api/v1/stream (`GEOFLUX_GATEWAY_*`)."""

    model_config = _section("GEOFLUX_GATEWAY_")

    window: int = 1000  # messages sent and not yet acknowledged, per subscriber
    slow_client_s: float = 30.0  # a full window for this long: disconnected as a slow consumer
    send_timeout_s: float = 10.0  # one message not taken by the socket within this: the same
    rate_per_s: float = 5000.0  # per subscriber
    burst: float = 1000.0
    batch: int = 500
    heartbeat_s: float = 5.0  # cursor messages while nothing matches the filter
    ring_per_partition: int = 50_000  # recent events held in memory; older ones come from Kafka


class MetricsSettings(BaseSettings):
    """Where workers serve Prometheus metrics (`GEOFLUX_METRICS_*`); the port is each worker's
    `--metrics-port`. 127.0.0.1 by default; 0.0.0.0 in containers so Prometheus can scrape."""

    model_config = _section("GEOFLUX_METRICS_")

    host: str = "127.0.0.1"


class PostgresSettings(BaseSettings):
    """PostgreSQL/PostGIS (`GEOFLUX_PG_*`)."""

    model_config = _section("GEOFLUX_PG_")

    dsn: str = "postgresql://geoflux@127.0.0.1:5432/geoflux"


class AuditSettings(BaseSettings):
    """The audit trail in PostgreSQL (`GEOFLUX_AUDIT_*`): a consumer group writing events,
    matches and status changes into one table partitioned by day (streams/audit_sink.py)."""

    model_config = _section("GEOFLUX_AUDIT_")

    group_id: str = "geoflux-audit"
    table: str = "geoflux_audit"
    batch_size: int = 5000  # records per database transaction (and per offset commit)
    poll_timeout_s: float = 0.5  # how long a batch waits to fill: it is latency
    backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)  # PG retries; the last repeats
    connect_timeout_s: float = 5.0
    retention_days: int = 30  # `geoflux audit drop-before` default: whole days kept
    max_query_rows: int = 1000  # the API's largest page


class GeofenceSettings(BaseSettings):
    """Geofence validation and evaluation (`GEOFLUX_GEOFENCE_*`)."""

    model_config = _section("GEOFLUX_GEOFENCE_")

    max_vertices: int = 10_000
    max_radius_m: float = 500_000.0
    circle_segments: int = 64
    hysteresis_m: float = 0.0  # default for fences without their own `hysteresis_m`
    allowed_lateness_s: float = 30.0
    # Each entity keeps every update of the allowed lateness to place late ones in order, at
    # most this many: a late update that needs a dropped one is dead-lettered as
    # `history_exceeded`. About 32 bytes a point in memory, 24 in the changelog.
    history_max_points: int = 1000
    history_per_entity: int | None = None  # its old name (GEOFLUX_GEOFENCE_HISTORY_PER_ENTITY), still read
    # Records per transaction at most. A batch is this large only when a backlog waits (a paced
    # feed fills smaller ones); then one changelog record covers all of an entity's updates in
    # it and the commit's cost is spread wider: 10,000 drained 47,700-47,900 updates/s against
    # 25,400-27,900 with 2,000, with no P95 difference beyond the noise at 5,000 and 10,000/s
    # (benchmarks/geofence_throughput.py, 10,000 fences). A batch whose processing raises is
    # retried one record per transaction, so a larger one takes longer to isolate its culprit.
    max_batch: int = 10_000
    # how long an evaluator with no record queued waits for one before it looks at its fence
    # edits and timers again; a batch is what is queued, it does not wait to fill
    poll_timeout_s: float = 0.005
    # how often it looks for due DWELL timers: one fires within this of its time
    tick_interval_s: float = 0.2
    group_id: str = "geoflux-evaluator"

    @model_validator(mode="before")
    @classmethod
    def _old_history_name(cls, data):
        if isinstance(data, dict) and data.get("history_per_entity") is not None:
            data.setdefault("history_max_points", data["history_per_entity"])
        return data


class ObjectStoreSettings(BaseSettings):
    """Where objects too large for a Kafka record live (`GEOFLUX_OBJECT_STORE_*`,
    connectors/object_store.py): staged job inputs and job results. `s3://bucket/prefix` in
    production (every API and worker must reach the same store), `file:///dir` on one node."""

    model_config = _section("GEOFLUX_OBJECT_STORE_")

    url: str = (Path.home() / ".local" / "share" / "geoflux" / "objects").as_uri()
    region: str = "us-east-1"
    endpoint_url: str | None = None  # another S3 endpoint (moto in tests, MinIO)

class LocalPostgresSettings(BaseSettings):
    """The PostgreSQL + PostGIS cluster `geoflux up` runs (`GEOFLUX_LOCAL_PG_*`,
    services/devstack/local_postgres.py) unless GEOFLUX_PG_DSN names another or `--no-postgres`.
    `data_dir` unset: `postgres/` in the stack's state directory."""

    model_config = _section("GEOFLUX_LOCAL_PG_")

    data_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 55432  # not 5432: the machine's own cluster may be there
    database: str = "geoflux"
    start_timeout_s: float = 60.0


class StackSettings(BaseSettings):
    """`geoflux up` (`GEOFLUX_STACK_*`): how it restarts the parts it runs. A part that exits is
    started again after 1 s, 2 s, 4 s ... up to `restart_max_s`; after `restart_reset_after_s`
    of healthy running the backoff starts from 1 s again; `crash_loop_exits` exits within
    `crash_loop_window_s` and `up` gives up on that part (the others go on)."""

    model_config = _section("GEOFLUX_STACK_")

    restart_initial_s: float = 1.0
    restart_max_s: float = 30.0
    restart_reset_after_s: float = 60.0
    crash_loop_exits: int = 5
    crash_loop_window_s: float = 120.0
    # extra environment for one part, e.g. {"jobs": {"GEOFLUX_JOBS_CONCURRENCY": "8"}}
    part_env: dict[str, dict[str, str]] = {}
    # the status file `up` keeps (set by `up` for the API it starts: GET /api/v1/stack)
    status_file: Path | None = None
    # how long `up` waits for its API to answer before it gives up starting (a busy machine
    # with a long backlog in the configuration topics takes a while)
    api_start_timeout_s: float = 300.0
