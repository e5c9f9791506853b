"""How a stage takes its next batch from the consumer, without a broker (the stage's Kafka
clients are built but never reach one; the consumer is then replaced by a simulated one that
records each call and hands out what it has queued)."""

from __future__ import annotations

import pytest

from geoflux.settings import GeofenceSettings, KafkaSettings
from schemas.codec import AvroCodec
from streams.evaluator import EvaluatorStage


class Queued:
    """Simulated consumer: a queue of records, and the calls made to it with their timeouts."""

    def __init__(self, queued: list, arriving: list) -> None:
        self.queued, self.arriving, self.calls = list(queued), list(arriving), []

    def consume(self, n: int, timeout: float) -> list:
        self.calls.append(("consume", n, timeout))
        out, self.queued = self.queued[:n], self.queued[n:]
        return out

    def poll(self, timeout: float):
        self.calls.append(("poll", timeout))
        self.queued += self.arriving  # what arrives while it waits: it returns at the first
        self.arriving = []
        return self.queued.pop(0) if self.queued else None


@pytest.fixture
def evaluator():
    ev = EvaluatorStage(KafkaSettings(bootstrap="127.0.0.1:9", topic_prefix="u."),
                        GeofenceSettings(max_batch=4, poll_timeout_s=0.25), AvroCodec())
    ev.consumer.close()
    yield ev


def test_queued_records_are_taken_without_waiting(evaluator):
    evaluator.consumer = Queued(["a", "b"], [])
    assert evaluator._fetch() == ["a", "b"]
    assert evaluator.consumer.calls == [("consume", 4, 0)]


def test_a_batch_is_at_most_max_batch_and_the_rest_stays_queued(evaluator):
    evaluator.consumer = Queued(list("abcdef"), [])
    assert evaluator._fetch() == list("abcd")
    assert evaluator._fetch() == list("ef")


def test_an_idle_loop_waits_for_the_first_record_then_takes_what_came_with_it(evaluator):
    evaluator.consumer = Queued([], list("xyz"))
    assert evaluator._fetch() == list("xyz")
    assert evaluator.consumer.calls == [("consume", 4, 0), ("poll", 0.25), ("consume", 3, 0)]
    evaluator.consumer = Queued([], [])
    assert evaluator._fetch() == []


def test_a_stage_that_waits_to_fill_asks_for_a_full_batch_with_its_timeout(evaluator):
    evaluator.waits_to_fill = True
    evaluator.consumer = Queued(["a"], [])
    assert evaluator._fetch() == ["a"]
    assert evaluator.consumer.calls == [("consume", 4, 0.25)]


def test_wants_tick_is_asked_at_most_once_a_tick_interval_whatever_it_answers(evaluator, monkeypatch):
    """Asking may read the store; a busy loop asked it on every step (half the evaluator's CPU)."""
    from streams.runtime import txn_processor

    clock, answers, asked = [100.0], [False, True, False], []
    monkeypatch.setattr(txn_processor.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(evaluator, "wants_tick", lambda: asked.append(clock[0]) or answers[len(asked) - 1])
    evaluator.tick_interval_s = 1.0
    due = []
    for k in range(12):  # steps a quarter of an interval apart: three intervals
        clock[0] = 100.0 + k / 4
        due.append(evaluator._tick_due())
    assert asked == [100.0, 101.0, 102.0]
    assert [k for k, d in enumerate(due) if d] == [4]  # the one True answer ticks
