"""The Faust app: its settings in one place. Agents that fit Faust's at-least-once model
(stream tables with de-duplication by deterministic id downstream) register on `app`.

Evaluation itself runs in `streams.evaluator` on confluent-kafka transactions: see that
module for why. Faust is pinned to 0.15.x with the aiokafka (`kafka://`) transport, which has
Faust's partition assignor; `confluent://` lacks it (FAUST-NOTES.md).
"""

from __future__ import annotations

import importlib.util

import faust

from connectors.aiokafka_config import faust_credentials
from geoflux.settings import KafkaSettings, StreamSettings


def store_url(settings: StreamSettings) -> str:
    if settings.store != "auto":
        return settings.store
    return "rocksdb://" if importlib.util.find_spec("rocksdict") else "memory://"


def create_app(kafka: KafkaSettings | None = None, stream: StreamSettings | None = None) -> faust.App:
    kafka, stream = kafka or KafkaSettings(), stream or StreamSettings()
    return faust.App(
        kafka.topic_prefix + stream.app_id,
        broker=[f"kafka://{b}" for b in kafka.bootstrap.split(",")],
        broker_credentials=faust_credentials(kafka),  # the same GEOFLUX_KAFKA_* security settings
        store=store_url(stream),
        datadir=str(stream.data_dir),
        processing_guarantee=stream.processing_guarantee,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication,
        topic_disable_leader=True,
        broker_commit_interval=stream.commit_interval_s,
        producer_acks=-1,
        web_enabled=False,
        web_bind="127.0.0.1",
        web_port=stream.web_port,
        autodiscover=False,
    )
