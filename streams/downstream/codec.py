"""Faust codecs for our topics' Confluent wire format (magic byte, schema id, Avro body).

One codec per public topic, registered in Faust's codec registry under `geoflux.<topic>`
(e.g. `geoflux.geo.geofence-events`), so a Faust topic names it as its `value_serializer`. The
codec reads any writer version the registry (or, registry-less, this release) knows into the
current schema, and writes with the current schema under the topic's subject — the same
`AvroCodec` every stage uses, so a Faust consumer and a stage agree byte for byte.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from geoflux.errors import GeofluxError, ValidationError
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec

# the topics downstream consumers read, and the schema of their values
PUBLIC_TOPICS = {
    "geo.geofence-events": "GeofenceEvent",
    "geo.cep-matches": "CepMatch",
    "alerts.status": "AlertStatus",
    "jobs.status": "JobStatus",
}


class WireFormatError(ValueError):
    """Raised by `loads` for bytes that are not a record of the topic's schema. A ValueError,
    so Faust reports it as a ValueDecodeError to the topic's decode-error handler."""

    def __init__(self, message: str, error_class: str) -> None:
        super().__init__(message)
        self.error_class = error_class


class ConfluentAvroCodec(codecs.Codec):
    """`dumps(dict) -> bytes` and `loads(bytes) -> dict` for one schema and topic."""

    def __init__(self, avro: AvroCodec, schema: str, topic_name: str, **kwargs: Any) -> None:
        super().__init__(avro=avro, schema=schema, topic_name=topic_name, **kwargs)
        self.avro, self.schema, self.topic_name = avro, schema, topic_name

    def _loads(self, s: bytes) -> Any:
        try:
            return self.avro.decode(s, self.schema)
        except ValidationError as exc:  # not our wire format, unknown id, bytes that do not decode
            raise WireFormatError(str(exc), "undecodable") from exc
        except GeofluxError as exc:  # the registry failed (after its retries): say how
            raise WireFormatError(str(exc), exc.error_class) from exc

    def _dumps(self, obj: Any) -> bytes:
        record = obj.to_representation() if hasattr(obj, "to_representation") else obj
        return self.avro.encode(self.topic_name, self.schema, record)


def codec_name(logical: str) -> str:
    return f"geoflux.{logical}"


def register_codecs(kafka: KafkaSettings, avro: AvroCodec) -> dict[str, str]:
    """Registers one codec per public topic; returns logical topic -> codec name."""
    names = {}
    for logical, schema in PUBLIC_TOPICS.items():
        name = codec_name(logical)
        codecs.register(name, ConfluentAvroCodec(avro, schema, topic(logical, kafka)))
        names[logical] = name
    return names
