"""The shell of geoflux's at-least-once workers (alert delivery, geoprocessing jobs): work
with side effects outside Kafka, which no Kafka transaction can cover.

Records are consumed, worked on out of order, and their offsets committed only up to the
lowest unfinished one (`OffsetTracker`), after every output of the finished ones is
acknowledged (acks=all). A crash therefore re-delivers unfinished work and never loses
any; the work itself carries an idempotency key, so a repeat has no second effect.

The shell owns the loop; a worker supplies only what differs:

    intake(msg)     read a consumed record: `hold` it until due, dead-letter it, or
                    `read_later` (the registry away); it is already tracked
    handle(work)    do it, as a task; end with `finish(work)` or `hold` it again.
                    Cancelled (at stop) it is neither: its offset stays uncommitted
    rank(work)      which ready work starts first (default: the order it became due)
    open / close    the worker's own parts (views, readers, tiers, channels)
    housekeeping()  every commit interval (metrics, sweeps)
    assigned(tps)   partitions assigned, before any of their records is read (in the poll
                    thread; may block: bring a view of finished work up to date)

A revoked partition is handed over only after its started work has finished (or, past
`revoke_wait_s`, been cancelled) and what finished is committed: its next owner reads again
only what never finished, and never while the old owner still works on it. So that the
rebalance can wait for work running on the event loop, the consumer is polled from a thread
of its own, and every other consumer call is made there too, or while that thread is idle: the
client lets one caller at a time into a consumer, so a call elsewhere that waits (a synchronous
commit waiting for an away group coordinator) keeps the poll, and the loop awaiting it, waiting
as long. Commits are therefore asynchronous, sent from the poll thread, their outcome reported
in `on_commit` (served by the same polls).

and the class attributes below. One pass of the loop: consume, intake, read again what is
due, release due work, start ready work up to `max_in_flight`, commit every
`commit_interval_s` and pause reading past `backlog_limit`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import structlog
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from connectors.kafka_config import consumer_config, producer_config
from geoflux.errors import TransientError
from geoflux.settings import KafkaSettings
from schemas.codec import AvroCodec
from schemas.dlq import dlq_record
from streams.runtime.group_health import GroupHealth
from streams.runtime.offset_tracker import OffsetTracker
from streams.runtime.restart import exit_for_supervisor, group_stats_config, watch_group
from streams.runtime.sensor import NullStageSensor, StageSensor
from streams.runtime.work_queue import Work, WorkQueue

log = structlog.get_logger("geoflux.worker")
STOP_FLUSH_S = 10.0  # at stop, outputs not acknowledged by then are re-done by the next owner
CANCEL_WAIT_S = 5.0  # at a rebalance, how long cancelled work may take to unwind
FORGET_WAIT_S = 30.0  # a loop that takes longer to forget partitions is stuck, not busy
# an asynchronous commit whose outcome has not arrived by then is sent again (committing the
# same offsets twice is harmless; never committing again is not)
COMMIT_REPLY_S = 60.0
SLOW_STOP_STEP_S = 2.0  # a step of a stop slower than this is logged by name


class _StopSteps:
    """Times a stop's steps, from the stop request on, and names a slow one in the log: a
    worker that once took over 20 s to stop after SIGTERM logged nothing that said where."""

    def __init__(self, stage: str, since: float | None) -> None:
        self.stage, self._last = stage, since if since is not None else time.monotonic()

    def done(self, step: str) -> None:
        now = time.monotonic()
        if now - self._last > SLOW_STOP_STEP_S:
            log.warning("slow step at stop", stage=self.stage, step=step, took_s=round(now - self._last, 1))
        self._last = now


__all__ = ["AtLeastOnceWorker", "Work"]


class AtLeastOnceWorker:
    stage = "worker"
    poll_max = 500  # records per consume call
    commit_interval_s = 0.2
    max_in_flight: int | None = None  # None: every due record starts at once
    backlog_limit = 10_000  # pause reading at this backlog, resume below half of it
    drain_s = 0.0  # at stop, how long started work may finish before it is cancelled
    # at a rebalance, how long started work on a revoked partition may finish before it is
    # cancelled (the whole group waits meanwhile; a cancelled one runs again at its new owner)
    revoke_wait_s = 10.0
    # after an assignment, how long work is only read, not started: a backlog waiting for this
    # worker arrives over several fetches, and what ranks first may not be in the first one
    gather_s = 0.0

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, group: str, topics: list[str],
                 stage_sensor: StageSensor | None = None) -> None:
        self.kafka, self.codec, self.topics = kafka, codec, topics
        self.stage_sensor = stage_sensor or NullStageSensor()
        self.tracker = OffsetTracker()
        self.queue: WorkQueue = WorkQueue(self.rank)
        self.in_flight = 0
        self._tasks: dict[asyncio.Task, Work] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._starts_after = 0.0
        self._poller = ThreadPoolExecutor(1, thread_name_prefix=f"{self.stage}-poll")
        self.running = True
        self._stop_asked: float | None = None
        self._stop_steps: _StopSteps | None = None  # the clock of the stop under way
        self.paused = False
        self._produce_errors: list[str] = []
        # outcomes of asynchronous commits, appended in the poll thread, read on the loop
        self._commit_outcomes: deque[dict] = deque()
        self._lost = False  # the last assignment was lost, not handed over
        self.health = GroupHealth(kafka.group_stall_s, since=time.monotonic())
        self.consumer = Consumer(consumer_config(kafka, kafka.topic_prefix + group, **{
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            "max.poll.interval.ms": 300_000, "on_commit": self._on_commit,
            **group_stats_config(self.health)}))
        self.producer = Producer(producer_config(kafka))

    # -- what a worker supplies -----------------------------------------------------------------
    def intake(self, msg) -> None:
        raise NotImplementedError

    async def handle(self, work: Work) -> None:
        raise NotImplementedError

    def rank(self, work: Work) -> tuple:
        return ()

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def housekeeping(self) -> None:
        pass

    def assigned(self, partitions: list) -> None:
        pass

    def backlog(self) -> int:
        """What counts against `backlog_limit`: records read and not started."""
        return len(self.queue)

    # -- what a worker calls --------------------------------------------------------------------
    def hold(self, work: Work, due_s: float) -> None:
        self.queue.hold(work, due_s)

    def read_later(self, msg, delay_s: float) -> None:
        self.queue.read_later((msg.topic(), msg.partition()), msg, time.time() + delay_s)

    def finish(self, work: Work) -> None:
        self.tracker.done(work.tp, work.offset)

    def produce(self, t: str, key: str, schema: str, rec: dict) -> None:
        self.producer.produce(t, key=key, value=self.codec.encode(t, schema, rec),
                              on_delivery=self._on_delivery)
        self.producer.poll(0)

    def dead_letter_input(self, msg, dlq_topic: str, error_class: str, message: str) -> None:
        """An input record this worker cannot read: to its DLQ with the original key and
        bytes, so its offset can move on and a person can see and redrive it."""
        rec = dlq_record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                         error_class, message, self.stage)
        self.producer.produce(dlq_topic, key=msg.key(), value=self.codec.encode(dlq_topic, "DlqRecord", rec),
                              on_delivery=self._on_delivery)
        self.producer.poll(0)
        self.stage_sensor.dead_lettered(self.stage, error_class)

    def stop(self, *_args) -> None:
        self.running = False
        if self._stop_asked is None:
            self._stop_asked = time.monotonic()

    # -- the loop -------------------------------------------------------------------------------
    def serve(self) -> None:
        """Runs the worker until it is stopped, in an event loop of its own. asyncio.run waits
        at its end for the threads its loop handed work to: that wait is a step of the stop."""
        try:
            asyncio.run(self.run())
        finally:
            if self._stop_asked is not None and self._stop_steps is not None:
                self._stop_steps.done("the loop's threads finishing")

    async def run(self, max_seconds: float | None = None) -> None:
        await self.open()
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self.consumer.subscribe(self.topics, on_assign=lambda _c, tps: self._on_assign(tps),
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        watching = watch_group(self.health, log, self.stage)
        stop_at = time.monotonic() + max_seconds if max_seconds else None
        last_commit = 0.0
        flushing: asyncio.Future | None = None  # outputs being acknowledged before a commit
        flushing_offsets: dict = {}
        to_commit: dict = {}  # acknowledged: committed with the next poll
        commit_sent = None  # when the commit whose outcome is awaited was sent
        tasks = self._tasks
        try:
            while self.running and (stop_at is None or time.monotonic() < stop_at):
                # consumed even while paused: the call also serves rebalances, and paused
                # partitions return nothing. In its own thread: a revocation inside it waits
                # for work running on this loop
                msgs = await self._loop.run_in_executor(self._poller, self._poll, to_commit)
                if to_commit:
                    to_commit, commit_sent = {}, time.monotonic()
                while self._commit_outcomes:
                    self.tracker.committed(self._commit_outcomes.popleft())
                    commit_sent = None
                for msg in msgs:
                    if not msg.error():
                        self.tracker.add((msg.topic(), msg.partition()), msg.offset())
                        self.intake(msg)
                now_s = time.time()
                for msg in self.queue.unread_due(now_s):
                    self.intake(msg)
                self.queue.release(now_s)
                while ((self.max_in_flight is None or self.in_flight < self.max_in_flight)
                       and time.monotonic() >= self._starts_after):
                    work = self.queue.next_ready()
                    if work is None:
                        break
                    self.in_flight += 1
                    task = asyncio.create_task(self._work(work))
                    tasks[task] = work
                    task.add_done_callback(self._forget_task)
                if flushing is not None and flushing.done():
                    if flushing.result():  # outputs the producer gave up on end the worker here
                        to_commit = flushing_offsets
                    flushing = None
                if commit_sent is not None and time.monotonic() - commit_sent > COMMIT_REPLY_S:
                    commit_sent = None
                if time.monotonic() - last_commit >= self.commit_interval_s:
                    if flushing is None and commit_sent is None and not to_commit:
                        # the outputs' acknowledgement is not awaited: with the broker away it
                        # takes up to the flush timeout, and the loop goes on polling (rebalances
                        # served) and working meanwhile. The offsets are read here, on the loop
                        # that changes them, before the flush: their work's outputs are all in it
                        flushing_offsets = self.tracker.committable()
                        if flushing_offsets:
                            flushing = asyncio.ensure_future(asyncio.to_thread(self._outputs_acknowledged))
                    self._flow_control()  # between polls: the poll thread is idle
                    self.housekeeping()
                    last_commit = time.monotonic()
                await asyncio.sleep(0 if msgs else 0.005)  # idle: let started work progress
        finally:
            steps = self._stop_steps = _StopSteps(self.stage, self._stop_asked)
            steps.done("the loop seeing the stop")
            await self._drain(set(tasks))
            steps.done("running work finishing or cancelled")
            if flushing is not None:
                await asyncio.wait([flushing], timeout=STOP_FLUSH_S)
            steps.done("outputs acknowledged")
            try:
                await asyncio.to_thread(self.commit, STOP_FLUSH_S)
                steps.done("the last commit")
            finally:
                self._loop = None  # the revocation at close has nothing left to wait for
                self.consumer.close()
                self._poller.shutdown()
                steps.done("leaving the group")
                try:
                    await self.close()
                    steps.done("the worker's own close")
                finally:
                    self.producer.flush(STOP_FLUSH_S)
                    steps.done("the producer's last flush")
                    watching.set()

    async def _work(self, work: Work) -> None:
        try:
            await self.handle(work)
        except Exception:  # a handler catches its own; this one stays unfinished, and says so
            log.exception("work failed outside its handler; its offset stays uncommitted",
                          stage=self.stage, topic=work.tp[0], partition=work.tp[1], offset=work.offset)
        finally:
            self.in_flight -= 1

    async def _drain(self, tasks: set[asyncio.Task]) -> None:
        if tasks and self.drain_s > 0:
            await asyncio.wait(tasks, timeout=self.drain_s)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget_task(self, task: asyncio.Task) -> None:
        self._tasks.pop(task, None)

    def _poll(self, offsets: dict) -> list:
        """In the poll thread: the commit of acknowledged work's offsets, then a consume. The
        commit's outcome arrives in `_on_commit`, served by a later consume."""
        if offsets:
            # only partitions still assigned: one revoked or lost since its offsets were read
            # has been let go, and its next owner may have committed past them
            owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            offsets = {tp: o for tp, o in offsets.items() if tp in owned}
            try:
                if offsets:
                    self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                         asynchronous=True)
                else:  # nothing sent, no outcome to wait for
                    self._commit_outcomes.append({})
            except KafkaException as exc:  # the next interval sends them again
                log.warning("commit not sent; trying again later", stage=self.stage,
                            error=exc.args[0].str())
                self._commit_outcomes.append({})
        return self.consumer.consume(self.poll_max, 0)

    def _on_commit(self, err, partitions) -> None:
        """An asynchronous commit's outcome (in the poll thread), handed to the loop: what it
        committed counts; on an error nothing does, and the next interval commits it again."""
        done = {}
        if err is None:
            done = {(tp.topic, tp.partition): tp.offset for tp in partitions or []
                    if tp.error is None and tp.offset >= 0}
        else:
            log.warning("commit failed; trying again later", stage=self.stage, error=err.str())
        self._commit_outcomes.append(done)

    def _on_assign(self, partitions: list) -> None:
        # a line per assignment, so a worker that takes no work says whether it has any; one
        # following a loss (the broker away past the session timeout) is worth a warning
        (log.warning if self._lost else log.info)(
            "assigned", stage=self.stage, after_loss=self._lost,
            partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions))
        self._lost = False
        self.health.joined(time.monotonic())
        self._starts_after = time.monotonic() + self.gather_s
        self.assigned(partitions)

    def _on_revoke(self, consumer, partitions) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread and not loop.is_closed():
            # in the poll thread: the loop finishes (or cancels) the revoked partitions' work,
            # and this thread commits it, before this returns, that is before the partitions move
            try:
                offsets = asyncio.run_coroutine_threadsafe(self._let_go(revoked), loop).result(
                    self.revoke_wait_s + CANCEL_WAIT_S + 5)
                if offsets:
                    self._commit_at_revocation(offsets)
            except Exception as exc:  # its next owner does again what was not committed
                log.warning("revoked partitions let go without committing", stage=self.stage,
                            error=str(exc) or type(exc).__name__)
            self._forget_from_poll_thread(loop, revoked)
            return
        self._forget(revoked)

    def _on_lost(self, consumer, partitions) -> None:
        """Partitions taken away without a handover: this member's session expired (the broker
        paused or unreachable past the session timeout), and the group may already have given
        them to another member. Nothing is committed: when these went through the revocation's
        commit, a broker SIGSTOPped for 30 s left the poll thread waiting in that commit for
        minutes after the broker was back, past max.poll.interval.ms, and the worker took no
        work until it was killed. Started work is cancelled rather than waited for, so it never
        runs beside its new owner's; the new owner reads everything uncommitted again."""
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self._lost = True
        log.warning("partitions lost without a handover; their uncommitted work is read again",
                    stage=self.stage, partitions=sorted(p for _t, p in lost))
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._cancel(lost), loop).result(CANCEL_WAIT_S + 5)
            except Exception as exc:
                log.warning("lost partitions' work not all stopped", stage=self.stage,
                            error=str(exc) or type(exc).__name__)
            self._forget_from_poll_thread(loop, lost)
            return
        self._forget(lost)

    async def _cancel(self, tps: set) -> None:
        await self._stop_tasks([t for t, work in self._tasks.items() if work.tp in tps])

    async def _stop_tasks(self, tasks: list) -> None:
        """Cancels the tasks and waits a bounded time for them to end: this runs while the poll
        thread waits inside a rebalance callback, and a task slow to unwind must not keep the
        consumer from polling (past max.poll.interval.ms the group drops it)."""
        for t in tasks:
            t.cancel()
        if tasks:
            _done, stuck = await asyncio.wait(tasks, timeout=CANCEL_WAIT_S)
            if stuck:
                log.warning("cancelled work still unwinding; its partitions are let go anyway",
                            stage=self.stage, tasks=len(stuck))

    def _forget_from_poll_thread(self, loop, tps: set) -> None:
        """The loop forgets the partitions: only it changes the tracker and the queue. While the
        worker runs, the loop is free between polls; one that does not answer in
        FORGET_WAIT_S is stuck (a handler blocking it), and changing its tracker from this
        thread would be a race under it. The worker exits instead, for its supervisor to start
        it again; nothing is lost, as the partitions' uncommitted work is read again by their
        next owner."""
        try:
            asyncio.run_coroutine_threadsafe(self._forget_now(tps), loop).result(FORGET_WAIT_S)
        except concurrent.futures.TimeoutError:
            exit_for_supervisor(log, "the event loop is stuck", self.stage)
        except RuntimeError:  # the loop closed meanwhile: nothing runs on it to race with
            self._forget(tps)

    async def _forget_now(self, revoked: set) -> None:
        self._forget(revoked)

    def _forget(self, revoked: set) -> None:
        for tp in revoked:
            self.tracker.drop(tp)
        self.queue.forget(revoked)  # their new owner reads them again

    async def _let_go(self, revoked: set) -> dict:
        started = [t for t, work in self._tasks.items() if work.tp in revoked]
        if started:
            log.info("revoked partitions: letting started work finish", stage=self.stage,
                     partitions=sorted(p for _t, p in revoked), started=len(started))
            _done, late = await asyncio.wait(started, timeout=self.revoke_wait_s)
            await self._stop_tasks(list(late))
        return self.tracker.committable()

    def _commit_at_revocation(self, offsets: dict) -> None:
        if self.producer.flush(STOP_FLUSH_S) or self._produce_errors:
            raise TransientError("outputs not acknowledged")
        self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                             asynchronous=False)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self._produce_errors.append(f"{msg.topic()}: {err.str()}")

    def commit(self, flush_timeout_s: float = 30.0) -> bool:
        """Commits finished work, after its outputs are acknowledged (never before).

        With the broker away, outputs stay queued in the producer (it retries them until its
        delivery timeout) and nothing is committed: this returns False and the caller tries
        again later. An output the producer gave up on is work that must be done again, so
        the worker exits, and its successor re-reads everything uncommitted."""
        offsets = self.tracker.committable()
        if not offsets:
            return True
        if not self._send_commit(offsets, flush_timeout_s):
            return False
        self.tracker.committed(offsets)
        return True

    def _outputs_acknowledged(self, flush_timeout_s: float = 30.0) -> bool:
        """Waits for every output produced so far to be acknowledged: True then; False when
        some are still queued at the timeout (the broker away). An output the producer gave
        up on is work that must be done again: this raises, the worker exits, and its
        successor re-reads everything uncommitted."""
        remaining = self.producer.flush(flush_timeout_s)
        if self._produce_errors:
            raise TransientError(f"{len(self._produce_errors)} output(s) not delivered, first: "
                                 f"{self._produce_errors[0]}; exiting so the work is read again")
        if remaining:
            log.warning("outputs not acknowledged yet; not committing", remaining=remaining)
            return False
        return True

    def _send_commit(self, offsets: dict, flush_timeout_s: float = 30.0) -> bool:
        """A synchronous commit after the outputs' acknowledgement: only where no poll runs
        beside it (at stop), since it holds the consumer until the coordinator answers."""
        if not self._outputs_acknowledged(flush_timeout_s):
            return False
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                 asynchronous=False)
        except KafkaException as exc:
            log.warning("commit failed; trying again later", error=exc.args[0].str())
            return False
        return True

    def _flow_control(self) -> None:
        """Pauses reading ahead at `backlog_limit`; resumes below half of it. Paused again on
        every call while over: partitions assigned since the last pause are read otherwise."""
        assignment = self.consumer.assignment()
        if self.backlog() >= self.backlog_limit and assignment:
            self.consumer.pause(assignment)
            self.paused = True
        elif self.paused and self.backlog() < self.backlog_limit // 2:
            self.consumer.resume(assignment)
            self.paused = False
