"""The DLQ envelope every stage writes for a record it cannot handle. Pure.

Error classes a stage uses for what it reads (besides its own domain classes such as `late`):

    undecodable   not our wire format, an unknown schema id, or bytes that do not decode
    validation    decoded, but not a valid record of its kind (missing id, out-of-range value)
    processing    valid, yet the stage's logic raised on it (a bug or a bad configuration):
                  isolated from its batch and set aside so the stage goes on
"""

from __future__ import annotations

import time


def dlq_record(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
               error_class: str, message: str, stage: str, *, attempts: int = 1,
               first_failure_ms: int | None = None, redrive_topic: str | None = None,
               dlq_id: str | None = None) -> dict:
    now = int(time.time() * 1000)
    return {"dlq_id": dlq_id or f"{topic}:{partition}:{offset}", "original_topic": topic,
            "original_partition": partition, "original_offset": offset, "original_key": key,
            "original_value": value, "error_class": error_class, "error_message": message[:2000],
            "attempts": attempts, "first_failure_ms": first_failure_ms or now, "last_failure_ms": now,
            "redrive_topic": redrive_topic or topic, "stage": stage}
