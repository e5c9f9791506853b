"""Dead letters for Faust consumers: nothing read is skipped without a trace.

Faust's own handling of a record it cannot decode is to log it and move on (the offset is
committed past it), and an exception raised in an agent body still acknowledges the event.
Here both end in a DLQ topic instead, as `DlqRecord`s (the envelope every geoflux stage
writes, `schemas/dlq.py`), keeping the original bytes, key, topic, partition and
offset so the record can be inspected and redriven:

- `DeadLetterTopic` sends a record that fails to decode (key or value) to the DLQ;
- agents call `DeadLetters.send` for a record they decoded but could not process (they catch
  per message, so one bad record never stops the stream).

Ordering: Faust flushes its producer before it commits offsets. An agent sends its dead
letter before it lets go of the event, so the letter is durable before the offset that skips
the record is committed. A record that fails to decode is different: Faust acknowledges it
just before it calls the topic's handler, whose send may first wait for the DLQ topic's
metadata. A commit in that moment followed by a crash before the producer sends would lose
that one dead letter (a known limit, docs/ARCHITECTURE.md); apps declare the DLQ topic at
start to keep the moment short.
"""

from __future__ import annotations

from typing import Any

import faust

from schemas.codec import AvroCodec
from schemas.dlq import dlq_record


class DeadLetters:
    """A DLQ topic of one Faust app."""

    def __init__(self, app: faust.App, avro: AvroCodec, topic_name: str, stage: str) -> None:
        self.avro, self.stage, self.name = avro, stage, topic_name
        self.topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                               value_serializer="raw", internal=True)
        self.sent = 0

    async def send(self, message: Any, error_class: str, reason: str) -> None:
        await self.topic.maybe_declare()  # Faust creates only topics it consumes; once
        rec = dlq_record(message.topic, message.partition, message.offset, message.key,
                         message.value, error_class, reason, self.stage)
        # force: straight to the producer, not attached to an event that may not exist
        await self.topic.send(key=message.key, value=self.avro.encode(self.name, "DlqRecord", rec),
                              force=True)
        self.sent += 1


def decode_error_class(exc: BaseException) -> str:
    """Faust wraps the codec's error in a Key/ValueDecodeError; ours says its class."""
    return getattr(exc.__cause__, "error_class", None) or "undecodable"


class DeadLetterTopic(faust.Topic):
    """A Faust topic whose undecodable records go to `dead_letters` (Faust would skip them)."""

    def __init__(self, *args: Any, dead_letters: DeadLetters, **kwargs: Any) -> None:
        self.dead_letters = dead_letters
        super().__init__(*args, **kwargs)

    def _clone_args(self) -> dict:
        # Faust clones topics (for each agent's stream): the clone needs its DLQ too
        return {**super()._clone_args(), "dead_letters": self.dead_letters}

    async def on_key_decode_error(self, exc: Exception, message: Any) -> None:
        await self.dead_letters.send(message, decode_error_class(exc), f"key: {exc}")

    async def on_value_decode_error(self, exc: Exception, message: Any) -> None:
        await self.dead_letters.send(message, decode_error_class(exc), str(exc))
