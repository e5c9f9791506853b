"""A Faust app built from the `GEOFLUX_*` settings, for downstream consumer groups.

Faust is pinned to 0.15.x (earlier 0.13-0.14 releases could leave a worker stuck
"rebalancing") and uses the aiokafka (`kafka://`) transport: the `confluent://` driver has no
partition assignor of Faust's own, which tables need to keep a changelog partition with its
source partition. Security settings are the same as every other client's
(`connectors/aiokafka_config.py`). The processing guarantee is at-least-once: Faust's
exactly-once mode sends to topics a worker does not consume outside its transaction, so its
"exactly once" does not hold for them; apps here de-duplicate by the ids our records carry.
"""

from __future__ import annotations

import importlib.util

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver

from connectors.aiokafka_config import faust_credentials
from geoflux.settings import KafkaSettings, StreamSettings

STORES = {"memory": "memory://", "rocksdb": "rocksdb://"}


class _ReadCommittedThread(aiokafka_driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # Faust reads committed records only in its exactly-once mode; our stages write in
        # transactions, and a consumer must never see what an aborted one wrote. aiokafka
        # takes the level when the consumer starts (tests/integration/test_downstream_faust.py
        # writes an aborted transaction and checks it is not counted).
        consumer._isolation_level = "read_committed"
        return consumer


class _ReadCommittedConsumer(aiokafka_driver.Consumer):
    def _new_consumer_thread(self):
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(aiokafka_driver.Transport):
    Consumer = _ReadCommittedConsumer


class DownstreamApp(faust.App):
    """A Faust app whose consumer reads committed records only (`kafka://` transport)."""

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)


def store_url(settings: StreamSettings) -> str:
    """Faust's store for our `GEOFLUX_STREAM_STORE` name: RocksDB (through rocksdict) where
    it is installed, memory otherwise (a memory store replays the whole changelog at start)."""
    name = settings.store
    if name == "auto":
        name = "rocksdb" if importlib.util.find_spec("rocksdict") else "memory"
    return STORES.get(name, name)


def create_app(app_id: str, kafka: KafkaSettings | None = None,
               stream: StreamSettings | None = None, **overrides) -> DownstreamApp:
    kafka, stream = kafka or KafkaSettings(), stream or StreamSettings()
    stream.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    return DownstreamApp(
        kafka.topic_prefix + app_id,
        broker=[f"kafka://{b}" for b in kafka.bootstrap.split(",")],
        broker_credentials=faust_credentials(kafka),
        store=store_url(stream),
        datadir=str(stream.data_dir / "faust"),
        processing_guarantee=stream.processing_guarantee,
        topic_partitions=kafka.partitions,  # tables' changelogs match our topics' partitions
        topic_replication_factor=kafka.replication,
        topic_disable_leader=True,  # no leader timers here: no leader topic either
        broker_commit_interval=stream.commit_interval_s,
        producer_acks=-1,
        producer_compression_type="lz4",
        web_enabled=False,
        web_bind="127.0.0.1",
        web_port=stream.web_port,
        autodiscover=False,
        **overrides,
    )
