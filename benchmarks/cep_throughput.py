"""CEP throughput, state size and match latency: 10,000 entities, 1,000 fences, 100 live
patterns. A script that prints a table, not a test.

1. Ceiling: a transactional pass-through (consume -> produce the same bytes -> commit, one
   stage, the CEP stages' batch size, no decoding, no CEP work) drains the backlog of N
   geofence events; its rate is what the CEP figures are compared with, in the same run.
2. Drain: the three CEP workers (rekey, entity, geofence) start on the same backlog; the rate
   is N over the time from their first committed progress to every group's lag being zero
   (the re-key's own finish is shown too: its decode and partition merge are its cost).
3. State: keys and bytes of the latest changelog value per key, per entity and per fence.
4. Sustained: events stamped with the wall clock at `--rate` for `--seconds`; match latency
   is the time a read_committed reader sees a match, less the event time that decided it
   (`end_ms`), against the target lateness_s + 1 s; the re-key's hold is the time from an
   event's publication to its re-keyed copy's.

    python benchmarks/cep_throughput.py                  # the issue's sizes
    python benchmarks/cep_throughput.py --mix distinct   # no two patterns alike (no sharing)
    python benchmarks/cep_throughput.py --smoke          # seconds; figures mean nothing

`--mix identical` (default) is the issue's generator: five kinds, 20 patterns each, and the
count and aggregate patterns of a kind alike but for their ids — which the engine's shared
state (streams/cep/engine.py) evaluates once. `--mix distinct` varies every parameter.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from benchmarks._broker import benchmark_broker  # noqa: E402
from benchmarks._ceiling import pass_through_ceiling, read_topic  # noqa: E402
from connectors.kafka_admin import apply  # noqa: E402
from connectors.kafka_config import consumer_config, producer_config  # noqa: E402
from geoflux.settings import KafkaSettings  # noqa: E402
from schemas.catalogue import topic  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from streams.cep.stage import MAX_BATCH  # noqa: E402
from tests.integration.cep_helpers import put_patterns  # noqa: E402
from tests.integration.geo_helpers import lag_is_zero, last_offsets, start_cli, stop  # noqa: E402

LATENESS_S = 5  # the patterns' default
QUIET_END_S = LATENESS_S + 6  # the lateness, the stage's idle detection (5 s) and a second


def say(*what) -> None:
    print(*what, file=sys.stderr, flush=True)


def patterns(n: int, fences: int, mix: str) -> list[dict]:
    rnd, out = random.Random(5), []
    kinds = ["sequence", "count", "comovement", "aggregate", "absence"]
    for i in range(n):
        kind, g = kinds[i % len(kinds)], lambda: f"g{rnd.randrange(fences)}"
        vary = i // len(kinds) if mix == "distinct" else 0
        base = {"pattern_id": f"p{i}", "tenant_id": "t", "severity": "info", "kind": kind}
        if kind == "sequence":
            base.update(within_s=600, steps=[{"event_type": "ENTER", "geofence_id": g()},
                                             {"event_type": "ENTER", "geofence_id": g()}])
        elif kind == "count":
            base.update(within_s=3600 - vary, at_least=3, event={"event_type": "EXIT"})
        elif kind == "comovement":
            base.update(within_s=60, at_least=3, geofence_id=g())
        elif kind == "aggregate":
            base.update(window={"type": "tumbling", "size_s": 60 + vary})
        else:
            base.update(within_s=300, trigger={"event_type": "ENTER", "geofence_id": g()},
                        expected={"event_type": "EXIT"})
        out.append(base)
    return out


class Walkers:
    """Entities moving between fences: each event is the entity's ENTER of a random fence or
    its EXIT of the one it is in."""

    def __init__(self, entities: int, fences: int, seed: int = 9) -> None:
        self.rnd, self.entities, self.fences = random.Random(seed), entities, fences
        self.inside: dict[int, str | None] = {}
        self.n = 0

    def next(self, ts: int) -> dict:
        e = self.rnd.randrange(self.entities)
        cur = self.inside.get(e)
        if cur is None:
            gid, kind = f"g{self.rnd.randrange(self.fences)}", "ENTER"
        else:
            gid, kind = cur, "EXIT"
        self.inside[e] = gid if cur is None else None
        self.n += 1
        return {"event_id": f"{self.n:032x}", "event_type": kind, "entity_id": f"e{e}", "geofence_id": gid,
                "geofence_version": 1, "tenant_id": "t", "lon": 0.0, "lat": 0.0, "ts_ms": ts,
                "source": f"loc:{self.n}", "reason": None, "produced_ms": int(time.time() * 1000),
                "attributes": {}}


def produce(producer: Producer, t: str, value: bytes, key: str) -> None:
    while True:
        try:
            producer.produce(t, value, key=key)
            return
        except BufferError:
            producer.poll(0.05)


def ceiling(settings: KafkaSettings, codec: AvroCodec, n: int) -> float:
    return pass_through_ceiling(settings, codec, "geo.geofence-events", "GeofenceEvent", n, MAX_BATCH)


def changelog_size(settings: KafkaSettings, logical: str, distinct=None) -> tuple[int, int]:
    """(keys, bytes of the latest value per key); with `distinct`, keys are distinct(value)."""
    latest: dict[bytes, int] = {}

    def keep(m) -> None:
        if m.value() is None:
            latest.pop(m.key(), None)
        else:
            latest[distinct(m.value()) if distinct else m.key()] = len(m.value())

    read_topic(settings, topic(logical, settings), keep)
    return len(latest), sum(latest.values())


class DrainWatch:
    """When each stage's group has committed the whole of its input, polled every 50 ms through
    one consumer per group kept open. (Until 2026-11-30 each check made a fresh consumer per
    group and read the partitions' tails again: a check took about a second and the last one
    nearly four, so the drain's end was seen seconds late.) A topic's end is its last record's
    offset + 1 per partition (a topic written in transactions ends in commit markers, which are
    not records), read once the topic is complete: the events topic at once, geo.cep-input once
    the re-key has committed every event."""

    def __init__(self, settings: KafkaSettings, groups: dict[str, tuple[str, str]]) -> None:
        self.settings, self.groups = settings, groups
        self.consumers = {mode: Consumer(consumer_config(settings, settings.topic_prefix + g))
                          for mode, (g, _t) in groups.items()}
        self.ends: dict[str, list[int]] = {}
        self.done_at: dict[str, float] = {}
        self._seen_commit = False

    def _committed(self, mode: str) -> list[int]:
        t = topic(self.groups[mode][1], self.settings)
        got = self.consumers[mode].committed([TopicPartition(t, p) for p in range(self.settings.partitions)],
                                             timeout=10)
        return [tp.offset for tp in got]

    def _end_of(self, logical: str) -> list[int]:
        if logical not in self.ends:
            ends = last_offsets(self.settings, topic(logical, self.settings), range(self.settings.partitions))
            self.ends[logical] = [ends[p] for p in range(self.settings.partitions)]
        return self.ends[logical]

    def poll(self) -> bool:
        """Whether every group is done; each group's done time is kept in `done_at`."""
        for mode, (_g, logical) in self.groups.items():
            if mode in self.done_at or (logical == "geo.cep-input" and "rekey" not in self.done_at):
                continue  # geo.cep-input is complete only once the re-key is done
            got = self._committed(mode)
            self._seen_commit = self._seen_commit or any(o > 0 for o in got)
            if all(o >= end for o, end in zip(got, self._end_of(logical))):
                self.done_at[mode] = time.time()
        return len(self.done_at) == len(self.groups)

    def any_committed(self) -> bool:
        return self._seen_commit

    def close(self) -> None:
        for c in self.consumers.values():
            c.close()


class Reader:
    """Reads a topic read_committed in a thread and keeps f(record, msg) for each record."""

    def __init__(self, settings: KafkaSettings, codec: AvroCodec, logical: str, schema: str, keep) -> None:
        self.values: list = []
        self._stop = threading.Event()
        self._c = Consumer(consumer_config(settings, uuid.uuid4().hex, **{"auto.offset.reset": "latest"}))
        self.assigned = threading.Event()
        self._c.subscribe([topic(logical, settings)], on_assign=lambda _c, _parts: self.assigned.set())
        self._args = (codec, schema, keep)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        codec, schema, keep = self._args
        while not self._stop.is_set():
            for m in self._c.consume(500, 0.1):
                if not m.error() and m.value() is not None:
                    v = keep(codec.decode(m.value(), schema), m)
                    if v is not None:
                        self.values.append(v)

    def ready(self) -> bool:
        return self.assigned.is_set()

    def close(self) -> list:
        self._stop.set()
        self._thread.join(10)
        self._c.close()
        return self.values


def assigned_at(work: Path) -> list[float]:
    """When each CEP stage was first assigned its partitions (epoch seconds), from its log."""
    out = []
    for mode in ("rekey", "entity", "geofence"):
        log = work / f"cep-{mode}.log"
        for line in log.read_text(errors="replace").splitlines() if log.exists() else ():
            if line.startswith("{") and '"assigned"' in line:
                stamp = json.loads(line)["timestamp"]
                out.append(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
                break
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def sustained(settings: KafkaSettings, codec: AvroCodec, walkers: Walkers, rate: int, seconds: float,
              settle_s: float, quiet_end_s: float) -> dict:
    t_ev = topic("geo.geofence-events", settings)
    start_ms = int(time.time() * 1000)
    measured_ms = start_ms + int(seconds * 1000)
    # the load goes on `quiet_end_s` past the measured window: a match is released once the stage's
    # input clock passes its last event by the lateness, and when the input stops the clock
    # stands still until the stage sees its inputs idle (CepStage.IDLE_MS), so the last
    # seconds' matches would measure the load's end, not the sustained load
    latency = Reader(settings, codec, "geo.cep-matches", "CepMatch",
                     lambda r, _m: time.time() * 1000 - r["end_ms"]
                     if start_ms <= r["end_ms"] < measured_ms else None)
    hold = Reader(settings, codec, "geo.cep-input", "GeofenceEvent",
                  lambda r, m: m.timestamp()[1] - r["produced_ms"] if r["ts_ms"] >= start_ms else None)
    deadline = time.monotonic() + 30
    while not (latency.ready() and hold.ready()) and time.monotonic() < deadline:
        time.sleep(0.1)
    producer = Producer(producer_config(settings, **{"linger.ms": 5}))
    begin, sent = time.monotonic(), 0
    while time.monotonic() - begin < seconds + quiet_end_s:
        due = int((time.monotonic() - begin) * rate)
        while sent < due:
            e = walkers.next(int(time.time() * 1000))
            produce(producer, t_ev, codec.encode(t_ev, "GeofenceEvent", e), e["geofence_id"])
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(30)
    achieved = sent / (time.monotonic() - begin)
    time.sleep(settle_s)  # the last events' matches are held back the lateness
    lat, held = latency.close(), hold.close()
    return {"rate": achieved, "matches": len(lat), "p50": pct(lat, 0.5), "p95": pct(lat, 0.95),
            "p99": pct(lat, 0.99), "hold_p50": pct(held, 0.5), "hold_p95": pct(held, 0.95)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--patterns", type=int, default=100)
    ap.add_argument("--fences", type=int, default=1000)
    ap.add_argument("--mix", choices=("identical", "distinct"), default="identical")
    ap.add_argument("--rate", type=int, default=2000, help="sustained events/s")
    ap.add_argument("--seconds", type=float, default=60, help="sustained phase length")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: proves the script runs")
    args = ap.parse_args()
    settle_s = LATENESS_S + 4  # past the lateness: what the stages still hold is released
    if args.smoke:
        args.events, args.entities, args.patterns, args.fences, args.rate, args.seconds = 3000, 300, 20, 50, 200, 3
        settle_s = 1
    quiet_end_s = 0 if args.smoke else QUIET_END_S
    work = Path(tempfile.mkdtemp(prefix="geoflux-cbench-"))
    procs: dict = {}
    with benchmark_broker(work) as bootstrap:
        settings = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"cb{uuid.uuid4().hex[:8]}.")
        try:
            apply(settings)
            codec = AvroCodec()
            put_patterns(settings, codec, patterns(args.patterns, args.fences, args.mix))
            t_ev = topic("geo.geofence-events", settings)
            producer = Producer(producer_config(settings, **{"linger.ms": 5, "queue.buffering.max.messages": 1_000_000}))
            walkers = Walkers(args.entities, args.fences)
            t0 = int(time.time() * 1000) - args.events * 5  # the backlog ends about now
            for i in range(args.events):
                e = walkers.next(t0 + i * 5)
                produce(producer, t_ev, codec.encode(t_ev, "GeofenceEvent", e), e["geofence_id"])
            producer.flush(120)
            say(f"{args.events:,} events loaded; the pass-through ceiling ...")
            roof = ceiling(settings, codec, args.events)
            say(f"ceiling {roof:,.0f}/s; draining through the CEP stages ...")
            for mode in ("rekey", "entity", "geofence"):
                # INFO: their "assigned" lines date the drain's start (`assigned_at`)
                procs[mode] = start_cli(settings, ["worker", "cep", "--mode", mode], f"cep-{mode}", work,
                                        GEOFLUX_LOG_LEVEL="INFO")
            groups = {"rekey": ("geoflux-cep-rekey", "geo.geofence-events"),
                      "entity": ("geoflux-cep-entity", "geo.cep-input"),
                      "geofence": ("geoflux-cep-geofence", "geo.geofence-events")}
            start = None
            deadline = time.monotonic() + 1800
            watch = DrainWatch(settings, groups)
            try:
                while not watch.poll():
                    if time.monotonic() > deadline:
                        raise SystemExit("CEP did not drain in 30 minutes")
                    if start is None and watch.any_committed():
                        start = time.time()
                    time.sleep(0.05)
            finally:
                watch.close()
            end = max(watch.done_at.values())
            if not all(lag_is_zero(settings, g, t) for g, t in groups.values()):  # slow, independent
                raise SystemExit("the drain watch saw every group done, but a group's lag is not zero")
            # from the stages' first assignment (their logs) to the re-key's last output record
            # (its timestamp) and to the drain's end: the re-key can be done before the loop
            # above first sees a commit
            start = min([start or end, *assigned_at(work)])
            stamps: list[int] = []
            read_topic(settings, topic("geo.cep-input", settings), lambda m: stamps.append(m.timestamp()[1]))
            elapsed = end - start
            rekey_s = max(stamps) / 1000 - start if stamps else elapsed
            time.sleep(settle_s)
            n_matches, _ = changelog_size(settings, "geo.cep-matches",
                                          lambda v: codec.decode(v, "CepMatch")["match_id"])
            late_by_stage: dict[str, int] = {}

            def count_late(m) -> None:
                rec = codec.decode(m.value(), "DlqRecord")
                if not late_by_stage:
                    say(f"first dead letter: {rec['stage']}: {rec['error_class']}: {rec['error_message'][:300]}")
                late_by_stage[rec["stage"]] = late_by_stage.get(rec["stage"], 0) + 1

            read_topic(settings, topic("geo.cep.dlq", settings), count_late)
            n_late = sum(late_by_stage.values())
            ent_keys, ent_bytes = changelog_size(settings, "geo.cep-state")
            geo_keys, geo_bytes = changelog_size(settings, "geo.cep-geofence-state")
            say(f"drained in {elapsed:.1f} s; sustained load ...")
            live = sustained(settings, codec, walkers, args.rate, args.seconds, settle_s, quiet_end_s)
        finally:
            for p in procs.values():
                stop(p)
    cep = args.events / elapsed
    print(f"\nCEP: {args.events:,} events, {args.entities:,} entities, {args.patterns} patterns ({args.mix}), "
          f"{args.fences:,} fences, {settings.partitions} partitions, {os.cpu_count()} cores shared with the broker\n")
    print("| what | events/s | vs ceiling |\n|---|---|---|")
    print(f"| ceiling: transactional pass-through, one stage, batch {MAX_BATCH}, no CEP work "
          f"| {roof:,.0f} | 1.00 |")
    print(f"| re-key stage (decode, partition merge), finished first | {args.events / rekey_s:,.0f} "
          f"| {args.events / rekey_s / roof:.2f} |")
    print(f"| drained through re-key + entity + geofence stages | {cep:,.0f} | {cep / roof:.2f} |")
    by_stage = ", ".join(f"{n:,} from {stage}" for stage, n in sorted(late_by_stage.items()))
    print(f"\nmatches (distinct ids): {n_matches:,}; events later than the lateness (geo.cep.dlq): {n_late:,}"
          + (f" ({by_stage})" if by_stage else ""))
    print(f"entity state: {ent_keys:,} keys, {ent_bytes / max(ent_keys, 1):,.0f} bytes per entity; "
          f"geofence state: {geo_keys:,} keys, {geo_bytes / max(geo_keys, 1):,.0f} bytes per fence "
          "(latest changelog value per key)")
    target = (LATENESS_S + 1) * 1000
    print(f"\nsustained {live['rate']:,.0f} events/s for {args.seconds:g} s (and {quiet_end_s} s more, not measured, "
          f"so the last matches are not the quiet end's): {live['matches']:,} matches; "
          f"match latency P50 {live['p50']:,.0f} ms, P95 {live['p95']:,.0f} ms, P99 {live['p99']:,.0f} ms "
          f"(target P95 <= lateness_s + 1 s = {target:,} ms: {'met' if live['p95'] <= target else 'NOT met'}); "
          f"re-key hold P50 {live['hold_p50']:,.0f} ms, P95 {live['hold_p95']:,.0f} ms")


if __name__ == "__main__":
    main()
