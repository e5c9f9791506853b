"""The alert configuration stores (channels, rules, silences) and the config-file loader."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from connectors.channels.base import parse_channel
from connectors.kafka_producer import ReliableProducer
from geoflux.errors import ValidationError
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.control.config_store import ConfigStore
from streams.alerting.escalation import parse_policy
from streams.alerting.noise import parse_silence
from streams.alerting.rules import parse_rule


def _silence(body: object, sid: str | None):
    if sid is None and isinstance(body, dict):
        sid = body.get("silence_id")
    return parse_silence(body, sid or uuid.uuid4().hex[:16], int(time.time() * 1000))


class AlertConfig:
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec,
                 producer: ReliableProducer | None = None) -> None:
        producer = producer or ReliableProducer(kafka)
        self.channels = ConfigStore(kafka, codec, topic("alerts.channels", kafka), "channel",
                                    parse_channel, "name", producer)
        self.rules = ConfigStore(kafka, codec, topic("alerts.rules", kafka), "rule", parse_rule,
                                 "rule_id", producer)
        self.silences = ConfigStore(kafka, codec, topic("alerts.silences", kafka), "silence",
                                    _silence, "silence_id", producer)
        self.escalations = ConfigStore(kafka, codec, topic("alerts.escalations", kafka), "policy",
                                       parse_policy, "policy_id", producer)

    @property
    def stores(self) -> tuple[tuple[str, ConfigStore], ...]:
        return (("channels", self.channels), ("rules", self.rules), ("silences", self.silences),
                ("escalations", self.escalations))

    def start(self) -> "AlertConfig":
        for _name, store in self.stores:
            store.start()
        return self

    def close(self) -> None:
        for _name, store in self.stores:
            store.close()

    def load_file(self, path: Path) -> dict[str, int]:
        """`{"channels": [...], "rules": [...], "silences": [...], "escalations": [...]}` (JSON):
        all validated first, then written; a bad object fails the whole file with its position."""
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path} is not JSON: {exc}") from None
        plan = []
        for key, store in self.stores:
            for i, body in enumerate(doc.get(key) or []):
                try:
                    store.parse(body, None)
                except ValidationError as exc:
                    raise ValidationError(f"{key}[{i}]: {exc}") from None
                plan.append((store, body))
        for store, body in plan:
            store.put(body)
        return {k: len(doc.get(k) or []) for k, _store in self.stores}
