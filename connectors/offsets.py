"""Offsets by time, topic ends, and consumer-group resets: what replay and reprocessing need.

Two users: `POST /api/v1/replay` (read a range with no group) and `geoflux replay --group`
(move a stopped group's committed offsets so its stage reprocesses). Both resolve times with
ListOffsets by timestamp, which answers in *record* time: every geoflux producer leaves the
record timestamp to librdkafka (CreateTime = the producing host's wall clock), so it is the
processing time, not the event time `ts_ms`. Callers that need event time filter on the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from confluent_kafka import (ConsumerGroupTopicPartitions, IsolationLevel, KafkaException,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, OffsetSpec

from connectors.kafka_admin import admin_client, wait_for_cluster
from geoflux.errors import ConfigurationError, TransientError, ValidationError
from geoflux.settings import KafkaSettings
from schemas.catalogue import catalogue

NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group never committed this partition
_MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


def parse_instant_ms(name: str, raw: object) -> int:
    """ISO 8601 (no offset means UTC) or integer epoch milliseconds -> epoch ms."""
    if isinstance(raw, bool):
        raise ValidationError(f"{name}: want ISO 8601 or epoch milliseconds, got {raw!r}")
    # isdigit() is true of "²" and "٣" too; only ASCII digits are an epoch
    if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().lstrip("-").isascii()
                                and raw.strip().lstrip("-").isdigit()):
        ms = int(raw)
    elif isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValidationError(f"{name}={raw!r} is neither ISO 8601 nor epoch milliseconds") from None
        ms = int((dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp() * 1000)
    else:
        raise ValidationError(f"{name}: want ISO 8601 or epoch milliseconds, got {raw!r}")
    if not 0 <= ms <= _MAX_MS:
        raise ValidationError(f"{name}={raw!r} is outside 1970..9999")
    return ms


def physical_topic(name: str, settings: KafkaSettings) -> str:
    """A catalogue topic by logical name (or already physical) -> its physical name."""
    cat = catalogue(settings)
    if name in cat:
        return cat[name].name
    if any(spec.name == name for spec in cat.values()):
        return name
    raise ConfigurationError(f"unknown topic {name!r}: not in the catalogue (schemas/catalogue.py)")


def _futures(futures: dict, what: str) -> dict:
    out = {}
    for key, fut in futures.items():
        try:
            out[key] = fut.result()
        except KafkaException as exc:
            err = exc.args[0]
            cls = TransientError if err.retriable() else ConfigurationError
            raise cls(f"{what}: {err.str()}") from exc
    return out


def partitions_of(admin: AdminClient, topic: str, settings: KafkaSettings) -> list[int]:
    md = admin.list_topics(topic, timeout=settings.request_timeout_s)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        raise ConfigurationError(f"topic {topic} does not exist: run `geoflux topics apply`")
    return sorted(meta.partitions)


def list_offsets(admin: AdminClient, topic: str, partitions: list[int], spec: OffsetSpec,
                 settings: KafkaSettings) -> dict[int, int]:
    """Partition -> offset for `spec` (earliest, latest = last stable offset, or a timestamp:
    the first offset whose record time is >= it; no such record: the latest offset)."""
    if not partitions:
        return {}
    req = {TopicPartition(topic, p): spec for p in partitions}
    got = _futures(admin.list_offsets(req, isolation_level=IsolationLevel.READ_COMMITTED,
                                      request_timeout=settings.request_timeout_s),
                   f"list offsets of {topic}")
    out = {tp.partition: info.offset for tp, info in got.items()}
    missing = [p for p, o in out.items() if o < 0]
    if missing:  # a time after every record: ListOffsets says -1, which means "the end"
        out.update(list_offsets(admin, topic, missing, OffsetSpec.latest(), settings))
    return out


# -- consumer-group resets ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OffsetChange:
    topic: str
    partition: int
    old: int  # NO_OFFSET: nothing committed
    new: int

    def __str__(self) -> str:
        old = "none" if self.old == NO_OFFSET else str(self.old)
        return f"{self.topic}[{self.partition}]: {old} -> {self.new}"


@dataclass(frozen=True, slots=True)
class ResetTarget:
    """Where to move each partition: exactly one of the four."""
    earliest: bool = False
    latest: bool = False
    at_ms: int | None = None
    offsets: dict[tuple[str, int], int] | None = None  # (physical topic, partition) -> offset


def group_name(settings: KafkaSettings, group: str) -> str:
    """Groups carry the topic prefix like topics do (`<prefix>geoflux-cep-rekey`); either
    spelling is accepted."""
    prefix = settings.topic_prefix
    return group if not prefix or group.startswith(prefix) else prefix + group


def reset_target(settings: KafkaSettings, topics: list[str], *, to_datetime: str | None = None,
                 to_offsets: list[str] = (), to_earliest: bool = False,
                 to_latest: bool = False) -> ResetTarget:
    """The CLI's options -> a target; exactly one must be given. An offset is PARTITION:OFFSET
    (one --topic) or TOPIC:PARTITION:OFFSET."""
    given = sum([to_datetime is not None, bool(to_offsets), to_earliest, to_latest])
    if given != 1:
        raise ConfigurationError("give exactly one of --to-datetime, --to-offset, --to-earliest, --to-latest")
    if to_datetime is not None:
        return ResetTarget(at_ms=parse_instant_ms("--to-datetime", to_datetime))
    if to_earliest or to_latest:
        return ResetTarget(earliest=to_earliest, latest=to_latest)
    offsets = {}
    for raw in to_offsets:
        parts = raw.rsplit(":", 2)
        if len(parts) == 2:
            if len(topics) != 1:
                raise ConfigurationError(f"--to-offset {raw}: PARTITION:OFFSET needs exactly one --topic "
                                         "(else TOPIC:PARTITION:OFFSET)")
            parts = [topics[0], *parts]
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise ConfigurationError(f"--to-offset {raw}: want PARTITION:OFFSET or TOPIC:PARTITION:OFFSET")
        offsets[(physical_topic(parts[0], settings), int(parts[1]))] = int(parts[2])
    return ResetTarget(offsets=offsets)


def _group_state(admin: AdminClient, group: str, settings: KafkaSettings) -> tuple[str, int]:
    desc = _futures(admin.describe_consumer_groups([group], request_timeout=settings.request_timeout_s),
                    f"describe group {group}")[group]
    return desc.state.name if desc.state else "UNKNOWN", len(desc.members or [])


def committed_offsets(admin: AdminClient, group: str, settings: KafkaSettings) -> dict[tuple[str, int], int]:
    res = _futures(admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=settings.request_timeout_s),
        f"offsets of group {group}")[group]
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions or []}


def plan_reset(settings: KafkaSettings, group: str, topics: list[str] | None,
               target: ResetTarget, admin: AdminClient | None = None) -> list[OffsetChange]:
    """What a reset would change; refuses a group with members (a running consumer keeps, and
    soon re-commits, its own positions, and the broker rejects the change anyway)."""
    admin = admin or admin_client(settings)
    wait_for_cluster(admin, settings)
    state, members = _group_state(admin, group, settings)
    if members or state not in ("EMPTY", "DEAD", "UNKNOWN"):
        raise ConfigurationError(f"group {group} is {state} with {members} active member(s): stop its "
                                 "workers first (offsets of a running group cannot be reset)")
    committed = committed_offsets(admin, group, settings)
    if target.offsets is not None:  # only the topics the offsets name
        names = sorted({t for t, _ in target.offsets})
    elif topics:
        names = [physical_topic(t, settings) for t in topics]
    else:
        names = sorted({t for t, _ in committed})
    if not names:
        raise ConfigurationError(f"group {group} has no committed offsets: name the topics with --topic")
    changes = []
    for t in names:
        parts = partitions_of(admin, t, settings)
        low = list_offsets(admin, t, parts, OffsetSpec.earliest(), settings)
        high = list_offsets(admin, t, parts, OffsetSpec.latest(), settings)
        if target.offsets is not None:
            wanted = {p: o for (tt, p), o in target.offsets.items() if tt == t}
            for p, o in wanted.items():
                if p not in low:
                    raise ValidationError(f"{t} has no partition {p} (it has {len(parts)})")
                if not low[p] <= o <= high[p]:
                    raise ValidationError(f"{t}[{p}]: offset {o} is outside {low[p]}..{high[p]}")
        elif target.at_ms is not None:
            wanted = list_offsets(admin, t, parts, OffsetSpec.for_timestamp(target.at_ms), settings)
        else:
            wanted = low if target.earliest else high
        changes += [OffsetChange(t, p, committed.get((t, p), NO_OFFSET), o) for p, o in sorted(wanted.items())]
    return changes


def apply_reset(settings: KafkaSettings, group: str, changes: list[OffsetChange],
                admin: AdminClient | None = None) -> None:
    if not changes:
        return
    admin = admin or admin_client(settings)
    tps = [TopicPartition(c.topic, c.partition, c.new) for c in changes]
    res = _futures(admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, tps)], request_timeout=settings.request_timeout_s),
        f"reset group {group}")[group]
    bad = [tp for tp in res.topic_partitions or [] if tp.error is not None]
    if bad:
        raise ConfigurationError(f"reset group {group}: {bad[0].topic}[{bad[0].partition}]: "
                                 f"{bad[0].error.str()}")


def reset_group(settings: KafkaSettings, group: str, topics: list[str] | None, target: ResetTarget,
                dry_run: bool = False) -> list[OffsetChange]:
    admin = admin_client(settings)
    changes = plan_reset(settings, group, topics, target, admin)
    if not dry_run:
        apply_reset(settings, group, changes, admin)
    return changes


__all__ = ["NO_OFFSET", "OffsetChange", "ResetTarget", "apply_reset", "committed_offsets",
           "group_name", "list_offsets", "reset_target", "parse_instant_ms", "partitions_of", "physical_topic", "plan_reset",
           "reset_group"]
