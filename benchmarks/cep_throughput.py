"""CEP throughput and state size: 10,000 entities, 100 live patterns. A script that prints a
table, not a test.

Pre-loads N geofence events (entities moving between 1,000 fences, ENTER/EXIT alternating),
then starts the three CEP workers (rekey, entity, geofence) and times how fast they drain
the backlog; reports events/s, matches produced and matches/s, and the state each changelog
holds (keys and bytes of the latest value per key).

    python benchmarks/cep_throughput.py --events 200000 --entities 10000 --patterns 100
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition  # noqa: E402

from connectors.kafka_admin import apply  # noqa: E402
from connectors.kafka_config import client_config  # noqa: E402
from geoflux.settings import KafkaSettings, LocalKafkaSettings  # noqa: E402
from schemas.catalogue import topic  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from services.config_store import ConfigStore  # noqa: E402
from services.local_kafka import LocalKafka  # noqa: E402
from services.local_process import free_port  # noqa: E402
from streams.cep.patterns import parse_pattern  # noqa: E402
from tests.integration.geo_helpers import lag_is_zero, start_cli, stop  # noqa: E402


def patterns(n: int, fences: int) -> list[dict]:
    rnd, out = random.Random(5), []
    kinds = ["sequence", "count", "comovement", "aggregate", "absence"]
    for i in range(n):
        kind, g = kinds[i % len(kinds)], lambda: f"g{rnd.randrange(fences)}"
        base = {"pattern_id": f"p{i}", "tenant_id": "t", "severity": "info", "kind": kind}
        if kind == "sequence":
            base.update(within_s=600, steps=[{"event_type": "ENTER", "geofence_id": g()},
                                             {"event_type": "ENTER", "geofence_id": g()}])
        elif kind == "count":
            base.update(within_s=3600, at_least=3, event={"event_type": "EXIT"})
        elif kind == "comovement":
            base.update(within_s=60, at_least=3, geofence_id=g())
        elif kind == "aggregate":
            base.update(window={"type": "tumbling", "size_s": 60})
        else:
            base.update(within_s=300, trigger={"event_type": "ENTER", "geofence_id": g()},
                        expected={"event_type": "EXIT"})
        out.append(base)
    return out


def changelog_size(settings: KafkaSettings, logical: str, distinct=None) -> tuple[int, int]:
    """(keys, bytes of the latest value per key); with `distinct`, keys are distinct(value)."""
    t = topic(logical, settings)
    c = Consumer(client_config(settings, **{"group.id": uuid.uuid4().hex,
                                            "isolation.level": "read_committed",
                                            "enable.partition.eof": True}))
    latest: dict[bytes, int] = {}
    c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
    eof: set[int] = set()
    while len(eof) < settings.partitions:
        for m in c.consume(1000, 1):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                continue
            latest[distinct(m.value()) if distinct else m.key()] = len(m.value() or b"")
    c.close()
    return len(latest), sum(latest.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--patterns", type=int, default=100)
    ap.add_argument("--fences", type=int, default=1000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="geoflux-cbench-"))
    broker = LocalKafka(LocalKafkaSettings(data_dir=work / "kafka", port=free_port(),
                                           controller_port=free_port(), heap="1g"))
    settings = KafkaSettings(bootstrap=broker.start(), topic_prefix="cb.")
    procs = {}
    try:
        apply(settings)
        codec = AvroCodec()
        store = ConfigStore(settings, codec, topic("geo.cep-patterns", settings), "pattern",
                            lambda b, i: parse_pattern(b, i), "pattern_id").start()
        for p in patterns(args.patterns, args.fences):
            store.put(p)
        store.close()
        t_ev = topic("geo.geofence-events", settings)
        producer = Producer(client_config(settings, **{"linger.ms": 5, "partitioner": "murmur2_random",
                                                       "queue.buffering.max.messages": 1_000_000}))
        rnd = random.Random(9)
        inside: dict[int, str | None] = {}
        t0 = int(time.time() * 1000) - args.events * 5
        for i in range(args.events):
            e = rnd.randrange(args.entities)
            cur = inside.get(e)
            if cur is None:
                gid, kind = f"g{rnd.randrange(args.fences)}", "ENTER"
                inside[e] = gid
            else:
                gid, kind = cur, "EXIT"
                inside[e] = None
            rec = {"event_id": f"{i:032x}", "event_type": kind, "entity_id": f"e{e}", "geofence_id": gid,
                   "geofence_version": 1, "tenant_id": "t", "lon": 0.0, "lat": 0.0, "ts_ms": t0 + i * 5,
                   "source": f"loc:{i}", "reason": None, "produced_ms": None, "attributes": {}}
            while True:
                try:
                    producer.produce(t_ev, codec.encode(t_ev, "GeofenceEvent", rec), key=gid)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(120)
        start = time.monotonic()
        for mode in ("rekey", "entity", "geofence"):
            procs[mode] = start_cli(settings, ["worker", "cep", "--mode", mode], f"cep-{mode}", work)
        groups = [("geoflux-cep-rekey", "geo.geofence-events"), ("geoflux-cep-entity", "geo.cep-input"),
                  ("geoflux-cep-geofence", "geo.geofence-events")]
        deadline = time.monotonic() + 1800
        while not all(lag_is_zero(settings, g, t) for g, t in groups):
            if time.monotonic() > deadline:
                raise SystemExit("CEP did not drain in 30 minutes")
            time.sleep(1)  # polling the groups' committed offsets
        elapsed = time.monotonic() - start
        time.sleep(8)  # past the default 5 s lateness: what the stages still held is released
        n_matches, _ = changelog_size(settings, "geo.cep-matches",
                                      lambda v: codec.decode(v, "CepMatch")["match_id"])
        n_late, _ = changelog_size(settings, "geo.cep.dlq")
        ent_keys, ent_bytes = changelog_size(settings, "geo.cep-state")
        geo_keys, geo_bytes = changelog_size(settings, "geo.cep-geofence-state")
    finally:
        for p in procs.values():
            stop(p)
        broker.stop()
    print(f"\nCEP: {args.events} events, {args.entities} entities, {args.patterns} patterns, "
          f"{args.fences} fences, {os.cpu_count()} cores shared with the broker\n")
    print(f"drained in {elapsed:.1f} s: {args.events / elapsed:,.0f} events/s through rekey + entity + geofence stages")
    print(f"matches (distinct match ids): {n_matches:,} ({n_matches / elapsed:,.0f}/s); "
          f"events later than the lateness (geo.cep.dlq): {n_late:,}")
    print(f"entity state: {ent_keys:,} keys, {ent_bytes / 1e6:.1f} MB; "
          f"geofence state: {geo_keys:,} keys, {geo_bytes / 1e6:.1f} MB (latest value per key)")


if __name__ == "__main__":
    main()
