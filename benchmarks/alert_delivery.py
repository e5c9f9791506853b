"""Alert delivery through the whole pipeline, measured: a script that prints a table.

Scenarios (critical alerts, seed retry/breaker settings; the hourly rate limit is raised so
the load is not suppressed):
  healthy   the primary channel answers 200
  primary-down  the primary answers 503 throughout; the rule's fallback channel delivers
For each: alerts/s through router, gate, delivery and status; created -> delivered
P50/P95/P99; share delivered within the seed's 30 s; lost (not SENT at the end).

    python benchmarks/alert_delivery.py --alerts 3000 --rate 300
    python benchmarks/alert_delivery.py --alerts 20000 --rate 1000 --scenarios healthy
    python benchmarks/alert_delivery.py --alerts 20000 --rate 1000 --down-alerts 2000 --down-rate 200
    python benchmarks/alert_delivery.py --smoke     # seconds: the script works, figures mean nothing

The ceilings compared with, both measured in the same run: the rate asked of the source
(alerts/s), and the receiver's: the same webhook channel code the delivery worker uses, in a
process of its own, posting to the same kind of local receiver with the worker's per-channel
concurrency, no Kafka involved (what delivery could reach if the pipeline cost nothing).

Receivers are local HTTP servers (tests/fakes.py), each in a process of its own; broker,
workers and receivers share this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._broker import benchmark_broker  # noqa: E402
from benchmarks._cpu import broker_pids, cpu_s  # noqa: E402
from connectors.kafka_admin import apply  # noqa: E402
from connectors.kafka_producer import ReliableProducer  # noqa: E402
from geoflux.settings import AlertSettings, KafkaSettings  # noqa: E402
from schemas.catalogue import topic  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from services.control.alert_config import AlertConfig  # noqa: E402
from tests.fakes import Answer  # noqa: E402
from tests.integration.alert_helpers import STAGES, StatusView, geofence_event  # noqa: E402
from tests.integration.geo_helpers import start_cli, stop  # noqa: E402

NO_LIMITS = json.dumps({s: 10**9 for s in ("critical", "high", "warning", "info")})
ROOT = Path(__file__).resolve().parents[1]
SENDER = """
import asyncio, sys, time
from connectors.channels.base import ChannelConfig, Notification
from connectors.channels.http import WebhookChannel

async def main(url, n, concurrency):
    channel = WebhookChannel(ChannelConfig("ceiling", "webhook", "acme", {"url": url, "secret": "s"}))
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            await channel.send(Notification(f"d{i}", f"a{i}", "acme", "critical", f"t{i}", "b",
                                            {"entity_id": f"e{i}"}, int(time.time() * 1000)))
    start = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    print(time.monotonic() - start)
    await channel.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


RECEIVER = """
import sys
from tests.fakes import Answer, FakeReceiver
receiver = FakeReceiver(Answer(int(sys.argv[1]), sys.argv[2]))
print(receiver.url, flush=True)
sys.stdin.read()  # until the benchmark closes it, or ends
receiver.close()
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


class ReceiverProcess:
    """A local receiver (tests/fakes.py) in a process of its own, as a real receiver is. In
    this process it shared one interpreter lock with the source and the status reader: with
    the source running, delivery's outcomes grew ~250/s, and >1,000/s once it had stopped."""

    def __init__(self, answer: Answer) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(answer.status), answer.body],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
        self.url = self.proc.stdout.readline().strip()
        if not self.url:
            self.close()
            raise SystemExit("the receiver process did not start")

    def cpu_s(self) -> float:
        return cpu_s([self.proc.pid])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def receiver_ceiling(n: int, concurrency: int) -> float:
    """Webhook sends per second to a local receiver, with nothing else of the pipeline."""
    receiver = ReceiverProcess(Answer(200, "ok"))
    try:
        out = subprocess.run([sys.executable, "-c", SENDER, receiver.url, str(n), str(concurrency)],
                             capture_output=True, text=True, timeout=300, check=True, env=_env())
        return n / float(out.stdout.strip().splitlines()[-1])
    finally:
        receiver.close()


def run(bootstrap: str, name: str, primary_ok: bool, n: int, rate: float, workdir: Path,
        settle_s: float) -> dict:
    settings = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"abench{uuid.uuid4().hex[:6]}.")
    apply(settings)
    codec = AvroCodec()
    primary = ReceiverProcess(Answer(200, "ok") if primary_ok else Answer(503, "down"))
    try:
        fallback = ReceiverProcess(Answer(200, "ok"))
    except BaseException:
        primary.close()
        raise
    config = AlertConfig(settings, codec).start()
    config.channels.put({"name": "primary", "kind": "webhook", "tenant_id": "acme",
                         "settings": {"url": primary.url, "secret": "s"}})
    config.channels.put({"name": "fallback", "kind": "slack", "tenant_id": "acme",
                         "settings": {"url": fallback.url}})
    config.rules.put({"rule_id": "bench", "tenant_id": "acme", "severity": "critical",
                      "channels": ["primary"], "fallback_channel": "fallback",
                      "match": {"event_type": "ENTER"}, "title": "{entity_id} {geofence_id}"})
    procs = {stage: start_cli(settings, args, f"{name}-{stage}", workdir,
                              GEOFLUX_ALERT_RATE_PER_HOUR=NO_LIMITS)
             for stage, args in STAGES.items()}
    statuses = StatusView(settings, codec)
    t_events = topic("geo.geofence-events", settings)
    producer = ReliableProducer(settings)
    try:
        time.sleep(settle_s)  # let the four consumer groups settle before the clock starts
        pids = {**{stage: p.pid for stage, p in procs.items()},
                **{"broker": pid for pid in broker_pids()}}
        cpu0 = {name: cpu_s([pid]) for name, pid in pids.items()}
        cpu0["bench"] = time.process_time()
        cpu0["receivers"] = primary.cpu_s() + fallback.cpu_s()
        start = time.monotonic()
        for i in range(n):
            ahead = i / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)  # pacing the source to the target rate
            e = geofence_event(i, entity=f"{name}-{i}")
            producer.send(t_events, codec.encode(t_events, "GeofenceEvent", e), key=e["geofence_id"])
        producer.flush_or_raise()
        sourced = n / (time.monotonic() - start)  # what the source reached: the rate asked, or less
        deadline = time.monotonic() + 300
        while statuses.by_status().get("SENT", 0) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        elapsed = time.monotonic() - start
        cpu = {name: cpu_s([pid]) - cpu0[name] for name, pid in pids.items()}
        cpu["pipeline"] = sum(cpu.values())  # the four workers and the broker
        cpu["bench"] = time.process_time() - cpu0["bench"]
        cpu["receivers"] = primary.cpu_s() + fallback.cpu_s() - cpu0["receivers"]
        snap = statuses.snapshot().values()
        lat = sorted((s["delivered_ms"] - s["created_ms"]) / 1000 for s in snap if s["status"] == "SENT")
        q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan"))
        return {"scenario": name, "alerts": n, "rate": rate, "sourced": sourced, "throughput": len(lat) / elapsed,
                "p50": q(0.5), "p95": q(0.95), "p99": q(0.99),
                "within_30s": sum(1 for x in lat if x <= 30) / n, "lost": n - len(lat),
                "via_fallback": sum(1 for s in snap if s["delivered_by"].get("primary") == "fallback"),
                "cpu_per_1k": {name: 1000 * v / n for name, v in cpu.items()}, "load": os.getloadavg()[0]}
    finally:
        for p in procs.values():
            stop(p)
        statuses.close()
        config.close()
        primary.close()
        fallback.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=300)
    ap.add_argument("--settle-s", type=float, default=8, help="after the workers start, before the clock")
    ap.add_argument("--smoke", action="store_true", help="30 alerts at 30/s, no settling")
    ap.add_argument("--scenarios", default="healthy,primary-down",
                    help="comma-separated, of: healthy, primary-down")
    ap.add_argument("--down-alerts", type=int, help="primary-down's alerts (default: --alerts)")
    ap.add_argument("--down-rate", type=float, help="primary-down's rate (default: --rate): each of its "
                    "alerts costs three failed attempts before the fallback")
    args = ap.parse_args()
    if args.smoke:  # the workers read from the earliest offset: alerts sent while they start wait
        args.alerts, args.rate, args.settle_s, args.down_alerts, args.down_rate = 30, 30, 0, None, None
    shape = {"healthy": (args.alerts, args.rate),
             "primary-down": (args.down_alerts or args.alerts, args.down_rate or args.rate)}
    workdir = Path(tempfile.mkdtemp(prefix="geoflux-abench-"))
    with benchmark_broker(workdir) as bootstrap:
        concurrency = AlertSettings().per_channel_concurrency
        receiver = receiver_ceiling(min(args.alerts, 10_000), concurrency)  # the broker up, idle
        rows = [run(bootstrap, name, name == "healthy", *shape[name], workdir, args.settle_s)
                for name in args.scenarios.split(",")]
    print(f"\ncritical alerts through router -> gate -> delivery -> status ({os.cpu_count()} cores, "
          f"broker and receivers on the same machine)\n")
    print(f"ceilings: the rate asked of the source; the receiver alone, {receiver:,.0f} webhook sends/s at "
          f"concurrency {concurrency} (the delivery worker's channel code, no Kafka); ratios: SENT/s over "
          f"each (issue 17 asks 1,000 alerts/s with P99 under 5 s)\n")
    print("(src/s: the rate the source reached; SENT/s: alerts over the time from the first event to the "
          "last SENT, so it counts the tail after the source's last event)\n")
    print(f"{'scenario':<13} {'alerts':>6} {'rate/s':>7} {'SENT/s':>7} {'ratio':>6} {'rx/s':>6} {'ratio':>6} "
          f"{'src/s':>6} {'P50 s':>6} {'P95 s':>6} {'P99 s':>6} {'<=30 s':>7} {'lost':>5} {'fallback':>8}")
    for r in rows:
        print(f"{r['scenario']:<13} {r['alerts']:>6} {r['rate']:>7.0f} {r['throughput']:>7.1f} "
              f"{r['throughput'] / r['rate']:>6.2f} {receiver:>6.0f} {r['throughput'] / receiver:>6.2f} "
              f"{r['sourced']:>6.0f} "
              f"{r['p50']:>6.2f} {r['p95']:>6.2f} {r['p99']:>6.2f} {r['within_30s']:>7.1%} "
              f"{r['lost']:>5} {r['via_fallback']:>8}")
    print("\nCPU seconds per 1,000 alerts (from the clock's start to the last SENT; pipeline = the four "
          "workers and the broker; bench = the source and the status reader in this process; "
          "receivers = their own processes)\n")
    names = list(rows[0]["cpu_per_1k"]) if rows else []
    print(f"{'scenario':<13} " + " ".join(f"{n:>8}" for n in names) + f" {'load 1m':>8}")
    for r in rows:
        print(f"{r['scenario']:<13} " + " ".join(f"{r['cpu_per_1k'][n]:>8.2f}" for n in names)
              + f" {r['load']:>8.1f}")


if __name__ == "__main__":
    main()
