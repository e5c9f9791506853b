"""The runtime every stage and worker runs on: the transactional shell (`txn_processor`) for
stages whose outputs, state and offsets commit together, the at-least-once shell
(`at_least_once`) for workers with side effects outside Kafka, and what they share — the offset
tracker, the work queue, the stage sensor. A stage supplies what a batch of records does; the
shell owns the consumer, the producer, commits, rebalances and faults; a shell stuck beyond
undoing exits for its supervisor (`restart`)."""
