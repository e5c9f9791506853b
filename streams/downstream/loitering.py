"""An example downstream consumer group shipped with the package: loitering counts per
geofence in a Faust table, read from `geo.geofence-events` (read_committed), de-duplicated by
event id (`loitering_state.py`). Run it with

    python -m streams.downstream.loitering worker --without-web

(`GEOFLUX_KAFKA_*` says where the cluster is and how to authenticate,
`GEOFLUX_SCHEMA_REGISTRY_*` where the schemas are; without a registry the ids are our stable
ones). Counts live in the table `loitering-counts` (changelog
`<app id>-loitering-counts-changelog`; JSON keys `"tenant/geofence_id"` and JSON values, as
Faust writes every changelog). Records that do not decode and events the agent cannot count
go to `<app id>.dlq` as `DlqRecord`s; the agent catches per event, so the stream goes on.
"""

from __future__ import annotations

import structlog

from geoflux.errors import GeofluxError
from geoflux.settings import KafkaSettings, RegistrySettings, StreamSettings
from schemas.catalogue import topic
from schemas.codec import codec_from_settings
from streams.downstream import loitering_state
from streams.downstream.app import create_app
from streams.downstream.codec import register_codecs
from streams.downstream.dead_letters import DeadLetters, DeadLetterTopic
from streams.downstream.records import GeofenceEvent

log = structlog.get_logger(__name__)
APP_ID = "geoflux-loitering"


def rocksdb_options(stream: StreamSettings) -> dict:
    """Faust's RocksDB defaults allow a 2 GiB block cache per table partition: bound it by
    the same settings our own stores use."""
    mb = 1024 * 1024
    return {"block_cache_size": stream.rocksdb_block_cache_mb * mb,
            "write_buffer_size": stream.rocksdb_write_buffer_mb * mb, "max_write_buffer_number": 2}


def build(kafka: KafkaSettings | None = None, stream: StreamSettings | None = None,
          registry: RegistrySettings | None = None, keep: int = loitering_state.KEEP_IDS):
    kafka = kafka or KafkaSettings()
    app = create_app(APP_ID, kafka, stream)
    avro = codec_from_settings(registry or RegistrySettings())
    serializers = register_codecs(kafka, avro)
    dead = DeadLetters(app, avro, f"{app.conf.id}.dlq", stage=f"faust:{app.conf.id}")
    events = DeadLetterTopic(app, topics=[topic("geo.geofence-events", kafka)], key_type=str,
                             value_type=GeofenceEvent, key_serializer="raw",
                             value_serializer=serializers["geo.geofence-events"], dead_letters=dead)
    counts = app.Table("loitering-counts", partitions=kafka.partitions, key_type=str,
                       options=rocksdb_options(stream or StreamSettings()))

    @app.agent(events)
    async def count(stream):
        async for event in stream.events():
            try:  # an exception escaping here would still acknowledge the event
                record = event.value.to_representation()
                key = loitering_state.check_key(event.key, record)
                state, _ = loitering_state.apply(counts.get(key), record, keep)
                if state is not None:
                    counts[key] = state
            except Exception as exc:
                error_class = exc.error_class if isinstance(exc, GeofluxError) else "processing"
                log.warning("dead-lettered", error_class=error_class, error=str(exc),
                            offset=event.message.offset)
                await dead.send(event.message, error_class, str(exc))

    @app.task
    async def declare_dead_letters():
        # before the first bad record: its handler then only appends to the producer
        await dead.topic.maybe_declare()

    app.loitering_counts, app.dead_letters = counts, dead
    return app


app = build()  # `faust -A streams.downstream.loitering worker` finds it here

if __name__ == "__main__":
    app.main()
