"""Scale-out, proven for jobs (issue 16, item 5): two job workers share `jobs.requests` (six
partitions) while a queue of jobs at mixed priorities drains; one is SIGKILLed mid-queue and
started again. Checked against what was submitted, not against what the workers say:

- every job ends `successful` exactly once on `jobs.status` (a read_committed consumer of the
  test's own) and has one record on `jobs.results`;
- a job runs twice only if the killed worker had started it and that run never reached
  `successful` (at-least-once: the kill loses its uncommitted work, nothing else), and no two
  runs of a job overlap. A run is visible on `jobs.status`: each one starts with a `running`
  status carrying its own `started_ms`, and every later status of that run carries it too;
- per worker, priority order holds over its read-ahead buffer: no job started while a job of
  higher priority was waiting there (read, not yet started, and started by that worker later).

Which worker ran a job, and what it had read before, comes from the worker's log: `job
request read` (DEBUG) when a request enters its buffer and `job started` (INFO) when one is
taken from it, each with the job id, partition and offset.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.geo_helpers import (
    EventCollector,
    kill,
    lag_is_zero,
    start_api,
    start_cli,
    stop,
)
from tests.integration.geo_helpers import last_offsets
from tests.integration.test_jobs import execute, status_of

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 6
JOBS = 60
SECONDS = 0.3  # each job's work: 60 of them keep two workers of two slots busy for ~5 s
CONCURRENCY = 2
KILL_AFTER = 4  # jobs the second worker has started when it is SIGKILLed


def log_events(path: Path) -> list[dict]:
    out = []
    if path.exists():
        for line in path.read_bytes().splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # librdkafka's own lines
            if isinstance(ev, dict):
                out.append(ev)
    return out


def started(path: Path) -> list[dict]:
    return [ev for ev in log_events(path) if ev.get("event") == "job started"]


def read_to_end(settings, collector: EventCollector, logical: str) -> bool:
    """The collector has read every record of the topic there is now."""
    ends = last_offsets(settings, topic(logical, settings), range(settings.partitions))
    with collector._lock:
        read = defaultdict(lambda: -1)
        for p, offset, _ in collector.records:
            read[p] = max(read[p], offset)
    return all(read[p] + 1 >= end for p, end in ends.items())


def runs_of(statuses: list[dict]) -> dict[int, list[dict]]:
    """A job's statuses grouped by run (`started_ms`); `accepted` (no run yet) left out."""
    runs: dict[int, list[dict]] = defaultdict(list)
    for st in statuses:
        if st["started_ms"] is not None:
            runs[st["started_ms"]].append(st)
    return dict(runs)


def priority_violations(events: list[dict], priority: dict[str, int]) -> tuple[list[str], int]:
    """(violations, overtakes) in one worker's log. A job Y was waiting in the buffer when X
    started if the worker read Y before X started and started Y later from that same read (a
    revoked partition's requests are forgotten, so a job started after a revocation was read
    again after it). Violation: such a Y of higher priority than X. Overtake: such a Y of lower
    priority read before X was: the buffer did reorder (the check is not vacuous)."""
    reads: dict[str, list[int]] = defaultdict(list)
    start_at: dict[str, int] = {}
    for i, ev in enumerate(events):
        if ev.get("event") == "job request read":
            reads[ev["job_id"]].append(i)
        elif ev.get("event") == "job started":
            start_at.setdefault(ev["job_id"], i)
    # the read each start came from: the latest before it
    read_for = {j: max(r for r in reads[j] if r < s) for j, s in start_at.items()
                if any(r < s for r in reads[j])}
    violations, overtakes = [], 0
    for x, sx in start_at.items():
        for y, sy in start_at.items():
            if sy <= sx or y not in read_for or read_for[y] > sx:
                continue  # y was not waiting when x started
            if priority[y] > priority[x]:
                violations.append(f"{x} (priority {priority[x]}) started while {y} "
                                  f"(priority {priority[y]}) waited")
            elif priority[y] < priority[x] and x in read_for and read_for[y] < read_for[x]:
                overtakes += 1
    return violations, overtakes


@pytest.mark.parametrize("kafka_settings", [PARTITIONS], indirect=True)
def test_two_job_workers_share_the_queue_in_priority_order_and_a_sigkill_reruns_only_its_jobs(
        kafka_settings, tmp_path):
    s, codec = kafka_settings, AvroCodec()
    env = {"GEOFLUX_OBJECT_STORE_URL": (tmp_path / "objects").as_uri(),
           "GEOFLUX_STREAM_DATA_DIR": str(tmp_path / "state")}
    worker_env = {**env, "GEOFLUX_JOBS_CONCURRENCY": str(CONCURRENCY), "GEOFLUX_LOG_LEVEL": "DEBUG"}
    args = ["worker", "jobs", "--no-postgis", "--metrics-port", "0"]
    port = free_port()
    procs = {"api": start_api(s, port, tmp_path, **env)}
    statuses = EventCollector(s, codec, "jobs.status", "JobStatus")
    results = EventCollector(s, codec, "jobs.results", "JobResult")
    logs = {name: tmp_path / f"{name}.log" for name in ("jobs-0", "jobs-1", "jobs-1-again")}
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API port")
        # the whole queue is there before any worker runs: every worker's first read fills
        # its buffer with mixed priorities
        priority = {}
        for i in range(JOBS):
            code, _, info = execute(base, "sleep", {"seconds": SECONDS}, priority=(i * 7) % 10,
                                    headers={"Idempotency-Key": f"scale-{i}"})
            assert code == 201, info
            priority[info["jobID"]] = (i * 7) % 10

        t0 = time.monotonic()
        for name in ("jobs-0", "jobs-1"):
            procs[name] = start_cli(s, args, name, tmp_path, **worker_env)
        wait_for(lambda: len(started(logs["jobs-1"])) >= KILL_AFTER, 60, interval_s=0.01,
                 what=f"the second worker started {KILL_AFTER} jobs")
        kill(procs.pop("jobs-1"))
        killed_ms = int(time.time() * 1000)
        killed_started = {ev["job_id"] for ev in started(logs["jobs-1"])}
        procs["jobs-1-again"] = start_cli(s, args, "jobs-1-again", tmp_path, **worker_env)

        def successful() -> set[str]:
            return {r["job_id"] for r in statuses.snapshot() if r["status"] == "successful"}

        t_kill = time.monotonic() - t0
        wait_for(lambda: successful() >= set(priority), 90, what=f"{JOBS} jobs successful")
        t_done = time.monotonic() - t0
        # everything consumed is committed: no request left for anyone to run again
        wait_for(lambda: lag_is_zero(s, "geoflux-jobs", "jobs.requests"), 60, what="job lag 0")
        for name in ("jobs-0", "jobs-1-again"):
            stop(procs.pop(name))
        # everything the stopped workers produced has reached the test's consumers
        for collector, logical in ((statuses, "jobs.status"), (results, "jobs.results")):
            wait_for(lambda c=collector, t=logical: read_to_end(s, c, t), 30, interval_s=0.2,
                     what=f"{logical} read to its end")

        by_job: dict[str, list[dict]] = defaultdict(list)
        for st in statuses.snapshot():
            by_job[st["job_id"]].append(st)
        assert set(by_job) == set(priority), "statuses of jobs nobody submitted"

        # exactly one `successful` per job
        success_counts = {j: sum(st["status"] == "successful" for st in sts) for j, sts in by_job.items()}
        assert all(n == 1 for n in success_counts.values()), \
            {j: n for j, n in success_counts.items() if n != 1}

        # runs: only the killed worker's unfinished ones again, never two at once
        rerun = {}
        for job_id, sts in by_job.items():
            runs = sorted(runs_of(sts).items())
            assert runs, f"{job_id} never ran"
            for (_, earlier), (later_start, _) in pairwise(runs):
                last_update = max(st["updated_ms"] for st in earlier)
                assert last_update <= later_start, \
                    f"{job_id}: a run started at {later_start} while another updated it at {last_update}"
            if len(runs) > 1:
                rerun[job_id] = runs
        for job_id, runs in rerun.items():
            assert job_id in killed_started, f"{job_id} ran {len(runs)} times; the killed worker never had it"
            assert len(runs) == 2, f"{job_id} ran {len(runs)} times"
            (_, first), (second_start, _) = runs
            assert not any(st["status"] == "successful" for st in first), \
                f"{job_id} ran again after it had succeeded"
            assert second_start > killed_ms, f"{job_id} ran again before the kill"

        # one result per job; a second only for a job run again (killed after its result was
        # acknowledged and before its `successful` was)
        result_counts = defaultdict(int)
        for r in results.snapshot():
            result_counts[r["job_id"]] += 1
        assert set(result_counts) == set(priority)
        assert all(n == 1 or (j in rerun and n == 2) for j, n in result_counts.items()), \
            {j: n for j, n in result_counts.items() if n != 1}

        # who ran what: both workers took part, and every job's run is in one worker's log
        ran = {name: {ev["job_id"] for ev in started(path)} for name, path in logs.items()}
        assert ran["jobs-0"] and (ran["jobs-1"] | ran["jobs-1-again"]), ran
        assert set().union(*ran.values()) == set(priority)

        # priority order per worker, over what each had waiting in its buffer
        overtakes = 0
        for name, path in logs.items():
            violations, n = priority_violations(log_events(path), priority)
            assert not violations, f"{name}: {violations[:5]}"
            overtakes += n
        assert overtakes > 0, "no job ever overtook another: the priority check checked nothing"

        # and the API says so too
        assert all(status_of(base, j)["status"] == "successful" for j in priority)
        print(f"\nre-run after the SIGKILL: {len(rerun)} job(s) {sorted(rerun)}; "
              f"started by the killed worker: {len(killed_started)}; overtakes: {overtakes}; "
              f"jobs per worker: { {k: len(v) for k, v in ran.items()} }; killed at {t_kill:.1f} s, "
              f"all successful at {t_done:.1f} s after the workers started")
    finally:
        for p in procs.values():
            stop(p)
        statuses.close()
        results.close()
