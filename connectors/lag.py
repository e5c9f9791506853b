"""Consumer-group lag per partition with the AdminClient: committed offsets against the
read_committed end (the last stable offset). A group that is caught up on a topic written in
transactions still shows up to 1 per partition: the commit marker after its last record is an
offset no consumer ever receives."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from geoflux.settings import KafkaSettings

TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - max(self.committed, 0))


def group_lags(admin: AdminClient, settings: KafkaSettings) -> list[PartitionLag]:
    """Every group whose name starts with the topic prefix (all groups without a prefix);
    groups with no committed offset on a partition are reported from offset 0."""
    listed = admin.list_consumer_groups(request_timeout=TIMEOUT_S).result()
    groups = sorted(g.group_id for g in listed.valid if g.group_id.startswith(settings.topic_prefix))
    committed: dict[tuple[str, str, int], int] = {}
    for group in groups:
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                    request_timeout=TIMEOUT_S)
        for fut in futures.values():
            for tp in fut.result().topic_partitions or []:
                if tp.error is None and tp.topic.startswith(settings.topic_prefix):
                    committed[(group, tp.topic, tp.partition)] = tp.offset
    if not committed:
        return []
    wanted = {TopicPartition(t, p): OffsetSpec.latest() for (_, t, p) in committed}
    ends = {}
    for tp, fut in admin.list_offsets(wanted, isolation_level=IsolationLevel.READ_COMMITTED,
                                      request_timeout=TIMEOUT_S).items():
        ends[(tp.topic, tp.partition)] = fut.result().offset
    return [PartitionLag(g, t, p, off, ends.get((t, p), 0)) for (g, t, p), off in sorted(committed.items())]
