"""Alert delivery soak: minutes of a steady mix of alerts while the primary channel fails
intermittently and the delivery worker is SIGKILLed twice. Prints per-severity SLA attainment
against the targets, lost alerts, repeats per idempotency key and latency percentiles.

    python benchmarks/alert_soak.py --minutes 5 --rate 10
    python benchmarks/alert_soak.py --smoke     # seconds: the script works, figures mean nothing

The full run is not part of CI (it runs for minutes); its smoke size is. Receivers are local HTTP servers (tests/fakes.py,
simulated receivers); the broker, the four alert workers and the receivers share this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NO_LIMITS = json.dumps({s: 10**9 for s in ("critical", "high", "warning", "info")})
from benchmarks._broker import benchmark_broker  # noqa: E402
from connectors.kafka_admin import apply  # noqa: E402
from connectors.kafka_producer import ReliableProducer  # noqa: E402
from geoflux.settings import AlertSettings, KafkaSettings  # noqa: E402
from schemas.catalogue import topic  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from services.control.alert_config import AlertConfig  # noqa: E402
from tests.fakes import Answer, FakeReceiver  # noqa: E402
from tests.integration.alert_helpers import STAGES, StatusView, geofence_event  # noqa: E402
from tests.integration.geo_helpers import kill, start_cli, stop  # noqa: E402

MIX = (("critical", 0.2), ("high", 0.3), ("warning", 0.5))  # share of the alerts per severity


def soak(bootstrap: str, minutes: float, rate: float, workdir: Path, settle_s: float) -> None:
    settings = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"soak{uuid.uuid4().hex[:6]}.")
    apply(settings)
    codec = AvroCodec()
    primary, fallback = FakeReceiver(), FakeReceiver()
    config = AlertConfig(settings, codec).start()
    config.channels.put({"name": "primary", "kind": "webhook", "tenant_id": "acme",
                         "settings": {"url": primary.url, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
    config.channels.put({"name": "fallback", "kind": "webhook", "tenant_id": "acme",
                         "settings": {"url": fallback.url, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
    for severity, _share in MIX:
        config.rules.put({"rule_id": f"soak-{severity}", "tenant_id": "acme", "severity": severity,
                          "channels": ["primary"], "fallback_channel": "fallback",
                          "match": {"event_type": "ENTER", "geofence_id": f"zone-{severity}"},
                          "title": "{entity_id} in {geofence_id}"})
    env = {"GEOFLUX_ALERT_RATE_PER_HOUR": NO_LIMITS}
    procs = {stage: start_cli(settings, args, f"soak-{stage}", workdir, **env) for stage, args in STAGES.items()}
    statuses = StatusView(settings, codec)
    t_events = topic("geo.geofence-events", settings)
    producer = ReliableProducer(settings)
    severity_of: dict[str, str] = {}
    stop_chaos = threading.Event()
    kills: list[float] = []

    def chaos(duration: float) -> None:
        """Primary down 20 s of every 60 s (from 15 s in, or a quarter of a shorter run); the
        delivery worker SIGKILLed at 1/3 and 2/3."""
        t0 = time.monotonic()
        next_outage, next_kill = first_outage, [duration / 3, 2 * duration / 3]
        while not stop_chaos.wait(0.5):
            now = time.monotonic() - t0
            if now >= next_outage:
                primary.fail_for(20, Answer(503, "intermittent outage"))
                next_outage += 60
            if next_kill and now >= next_kill[0]:
                next_kill.pop(0)
                kill(procs["delivery"])
                kills.append(now)
                procs["delivery"] = start_cli(settings, STAGES["delivery"], f"soak-delivery-{len(kills)}",
                                              workdir, **env)

    try:
        time.sleep(settle_s)  # let the consumer groups settle before the clock starts
        duration = minutes * 60
        first_outage = min(15.0, duration / 4)
        threading.Thread(target=chaos, args=(duration,), daemon=True).start()
        start, i = time.monotonic(), 0
        while time.monotonic() - start < duration:
            ahead = i / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)  # pacing the source to the target rate
            severity = MIX[0][0] if i % 10 < 2 else MIX[1][0] if i % 10 < 5 else MIX[2][0]
            e = geofence_event(i, entity=f"soak-{i}", geofence=f"zone-{severity}")
            severity_of[f"soak-{i}"] = severity
            producer.send(t_events, codec.encode(t_events, "GeofenceEvent", e), key=e["geofence_id"])
            i += 1
        producer.flush_or_raise()
        stop_chaos.set()
        deadline = time.monotonic() + 300
        while statuses.by_status().get("SENT", 0) < i and time.monotonic() < deadline:
            time.sleep(0.5)
        report(statuses, primary, fallback, i, minutes, rate, kills, first_outage)
    finally:
        stop_chaos.set()
        for p in procs.values():
            stop(p)
        statuses.close()
        config.close()
        primary.close()
        fallback.close()


def report(statuses, primary, fallback, sent_events: int, minutes: float, rate: float, kills,
           first_outage: float) -> None:
    targets = AlertSettings().sla_targets
    snap = list(statuses.snapshot().values())
    keys = Counter(r.headers["webhook-id"] for rcv in (primary, fallback) for r in rcv.received())
    print(f"\nsoak: {minutes:g} min at {rate:g} alerts/s, primary down 20 s of every 60 s from "
          f"{first_outage:g} s, delivery "
          f"worker SIGKILLed at {', '.join(f'{k:.0f} s' for k in kills)} ({os.cpu_count()} cores)\n")
    print(f"{'severity':<9} {'alerts':>6} {'SENT':>6} {'lost':>5} {'target':>14} {'attained':>9} "
          f"{'P50 s':>6} {'P95 s':>6} {'P99 s':>6} {'fallback':>8}")
    for severity, _share in MIX:
        mine = [s for s in snap if s["severity"] == severity]
        lat = sorted((s["delivered_ms"] - s["created_ms"]) / 1000 for s in mine if s["delivered_ms"])
        t = targets[severity]
        within = sum(1 for x in lat if x <= t["within_s"])
        q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan"))
        sent = sum(1 for s in mine if s["status"] == "SENT")
        print(f"{severity:<9} {len(mine):>6} {sent:>6} {len(mine) - sent:>5} "
              f"{t['target']:>7.1%} <{t['within_s']:>4g} s {within / max(len(mine), 1):>9.2%} "
              f"{q(.5):>6.2f} {q(.95):>6.2f} {q(.99):>6.2f} "
              f"{sum(1 for s in mine if s['delivered_by'].get('primary') == 'fallback'):>8}")
    print(f"\nsource events {sent_events}, alerts recorded {len(snap)} (missing: {sent_events - len(snap)})")
    repeats = Counter(n for n in keys.values() if n > 1)
    print(f"receiver requests {sum(keys.values())} under {len(keys)} idempotency keys; keys received more "
          f"than once: {sum(repeats.values())} ({dict(sorted(repeats.items()))} times) — the receiver "
          "drops these by key")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--rate", type=float, default=10)
    ap.add_argument("--settle-s", type=float, default=8, help="after the workers start, before the clock")
    ap.add_argument("--smoke", action="store_true", help="6 s at 5 alerts/s, no settling")
    args = ap.parse_args()
    if args.smoke:  # the workers read from the earliest offset: alerts sent while they start wait
        args.minutes, args.rate, args.settle_s = 0.1, 5, 0
    workdir = Path(tempfile.mkdtemp(prefix="geoflux-soak-"))
    with benchmark_broker(workdir) as bootstrap:
        soak(bootstrap, args.minutes, args.rate, workdir, args.settle_s)


if __name__ == "__main__":
    main()
