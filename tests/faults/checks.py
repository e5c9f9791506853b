"""What each pipeline should have done, computed independently, against what it did.

Every check returns an `Outcome`: how many items were expected, delivered, lost (neither
delivered nor dead-lettered), duplicated (two distinct records for one item: what the product
promises never happens), repeated (the same item sent again and dropped downstream by its id:
what at-least-once side effects allow) and dead-lettered (set aside with a reason)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

import psycopg

from geoflux.errors import ValidationError
from geoflux.keys import scoped
from schemas.catalogue import topic
from streams.alerting.router_stage import alert_id_for
from tests.faults.stack import RULE, TENANT, FaultStack
from tests.integration.geo_helpers import OPERATOR_KEY, http
from tests.integration.replay_helpers import read_raw
from tests.scenario import Scenario

PIPELINES = ("geofence-events", "cep", "alerts", "jobs", "audit", "gateway")


@dataclass
class Outcome:
    pipeline: str
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    repeated: int = 0
    dead_lettered: int = 0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def expected_events(stack: FaultStack) -> dict[tuple[str, str], list[tuple[str, int]]]:
    sent = {e: track[:stack.sent_steps] for e, track in stack.scenario.tracks.items()}
    return Scenario(stack.scenario.fences, sent).expected()


def unique_events(stack: FaultStack) -> tuple[dict[str, dict], int]:
    records = stack.events.snapshot()
    unique: dict[str, dict] = {}
    for r in records:
        unique.setdefault(r["event_id"], r)
    return unique, len(records) - len(unique)


def geofence_events(stack: FaultStack) -> Outcome:
    out = Outcome("geofence-events")
    expected = expected_events(stack)
    unique, out.duplicated = unique_events(stack)
    got: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for r in unique.values():
        got[(r["entity_id"], r["geofence_id"])].append((r["event_type"], r["ts_ms"]))
    want = Counter((pair, *e) for pair, seq in expected.items() for e in seq)
    have = Counter((pair, *e) for pair, seq in got.items() for e in seq)
    out.expected, out.delivered = sum(want.values()), sum((have & want).values())
    out.lost = sum((want - have).values())
    wrong = sum((have - want).values())
    if wrong:
        out.problems.append(f"{wrong} event(s) the independent computation does not have")
    out.dead_lettered = sum(1 for r in stack.dlqs["geo.locations.dlq"].snapshot()
                            if not _is_poison(r))
    return out


def cep(stack: FaultStack) -> Outcome:
    """Pattern: two ENTERs (any fences) in a row per entity, skipping past each match: an entity
    with n ENTERs in the oracle makes n // 2 matches."""
    out = Outcome("cep")
    enters = Counter(entity for (entity, _g), seq in expected_events(stack).items()
                     for kind, _ts in seq if kind == "ENTER")
    records = stack.matches.snapshot()
    ids = Counter(r["match_id"] for r in records)
    out.duplicated = sum(n - 1 for n in ids.values())
    per_entity = Counter(r["key"] for r in {r["match_id"]: r for r in records}.values())
    out.expected = sum(n // 2 for n in enters.values())
    out.delivered = sum(min(per_entity[e], n // 2) for e, n in enters.items())
    extra = sum(max(0, per_entity[e] - enters.get(e, 0) // 2) for e in per_entity)
    if extra:
        out.problems.append(f"{extra} match(es) beyond the expected pairs")
    late = [r for r in stack.dlqs["geo.cep.dlq"].snapshot() if r["error_class"] == "late"]
    out.dead_lettered = len(late)
    out.lost = max(0, out.expected - out.delivered - len(late))
    return out


def alerts(stack: FaultStack) -> Outcome:
    out = Outcome("alerts")
    unique, _ = unique_events(stack)
    want = {f"{alert_id_for(TENANT, RULE['rule_id'], eid)}:hook" for eid, r in unique.items()
            if r["event_type"] == "ENTER"}
    ok = Counter(r.headers.get("webhook-id") for r in stack.receiver.received())
    dead = {r["original_key"].decode() if r["original_key"] else "" for r in stack.dlqs["alerts.dlq"].snapshot()}
    dead_ids = {d for d in want if d.split(":")[0] in dead}
    out.expected, out.delivered = len(want), len(want & set(ok))
    out.repeated = sum(n - 1 for k, n in ok.items() if k in want)
    out.dead_lettered = len(dead_ids - set(ok))
    out.lost = len(want - set(ok) - dead_ids)
    return out


def jobs(stack: FaultStack) -> Outcome:
    out = Outcome("jobs", expected=len(stack.jobs))
    successes: Counter = Counter()
    for r in _read_all(stack, "jobs.status", "JobStatus"):
        if r and r["status"] == "successful":
            successes[r["job_id"]] += 1
    failed = {_job_of(r) for r in stack.dlqs["jobs.dlq"].snapshot()}
    for _key, job_id in stack.jobs.items():
        if successes[job_id]:
            out.delivered += 1
        elif job_id in failed:
            out.dead_lettered += 1
        else:
            out.lost += 1
    out.repeated = sum(n - 1 for j, n in successes.items() if j in set(stack.jobs.values()))
    return out


def audit(stack: FaultStack) -> Outcome:
    out = Outcome("audit")
    unique, _ = unique_events(stack)
    with psycopg.connect(stack.pg_dsn, connect_timeout=10) as conn:
        rows = Counter(r[0] for r in conn.execute(
            f"SELECT id FROM {stack.audit_table} WHERE kind = 'geofence_event'"))
    out.expected = len(unique)
    out.delivered = sum(1 for eid in unique if rows[eid])
    out.lost = out.expected - out.delivered
    out.duplicated = sum(n - 1 for n in rows.values())
    return out


def gateway(stack: FaultStack) -> Outcome:
    out = Outcome("gateway")
    unique, _ = unique_events(stack)
    received = stack.gateway.snapshot()
    seen = Counter(i for i, _ in received)
    out.expected = len(unique)
    out.delivered = sum(1 for eid in unique if seen[eid])
    out.lost = out.expected - out.delivered
    out.repeated = sum(n - 1 for n in seen.values())
    # per-geofence order: the first arrival of each event, in the order the topic holds them
    topic_order: dict[str, list[str]] = defaultdict(list)
    for r in stack.events.snapshot():
        if r["event_id"] not in topic_order[r["geofence_id"]]:
            topic_order[r["geofence_id"]].append(r["event_id"])
    first: dict[str, list[str]] = defaultdict(list)
    done: set[str] = set()
    for eid, gid in received:
        if eid not in done:
            done.add(eid)
            first[gid].append(eid)
    broken = [g for g, ids in first.items() if ids != topic_order[g][:len(ids)]]
    if broken:
        out.problems.append(f"per-geofence order broken for {len(broken)} geofence(s)")
    return out


CHECKS = {"geofence-events": geofence_events, "cep": cep, "alerts": alerts, "jobs": jobs,
          "audit": audit, "gateway": gateway}

# the input topics each pipeline's stages read, for the poison-record cells
INPUTS = {"geofence-events": ("geo.locations",),
          "cep": ("geo.geofence-events", "geo.cep-input"),
          "alerts": ("geo.geofence-events", "alerts.candidates", "alerts.alerts", "alerts.outcomes",
                     "alerts.lifecycle", "alerts.deliveries", "alerts.retry"),
          "jobs": ("jobs.requests", "jobs.retry"),
          "audit": ("geo.geofence-events", "jobs.status"),
          "gateway": ("geo.geofence-events",)}
DLQ_OF = {"geofence-events": ("geo.locations.dlq",), "cep": ("geo.cep.dlq",), "alerts": ("alerts.dlq",),
          "jobs": ("jobs.dlq",), "audit": ("audit.dlq",), "gateway": ()}


def poison_dead_lettered(stack: FaultStack, pipeline: str) -> tuple[int, int]:
    """(garbage records published on the pipeline's inputs, of them set aside on its DLQs)."""
    inputs = {topic(t, stack.kafka) for t in INPUTS[pipeline]}
    published = sum(n for t, n in stack.poison.items() if topic(t, stack.kafka) in inputs)
    set_aside = {(r["original_topic"], r["original_partition"], r["original_offset"])
                 for d in DLQ_OF[pipeline] for r in stack.dlqs[d].snapshot()
                 if r["original_topic"] in inputs and r["error_class"] == "undecodable"}
    return published, len(set_aside)


QUEUES = {"geo.locations.dlq": "locations", "geo.cep.dlq": "cep", "alerts.dlq": "alerts",
          "jobs.dlq": "jobs", "audit.dlq": "audit"}


def dlq_api_items(stack: FaultStack, pipeline: str) -> list[dict]:
    """The garbage a pipeline set aside, as GET /api/v1/dlq shows it (operators)."""
    inputs = {topic(t, stack.kafka) for t in INPUTS[pipeline]}
    items = []
    for d in DLQ_OF[pipeline]:
        status, body = http("GET", f"http://127.0.0.1:{stack.api_port}/api/v1/dlq?queue={QUEUES[d]}",
                            key=OPERATOR_KEY)
        assert status == 200, body
        items += [i for i in body["items"] if i["original_topic"] in inputs and i["error_class"] == "undecodable"]
    return items


def _is_poison(dlq: dict) -> bool:
    return bool(dlq["original_key"]) and b"poison-" in dlq["original_key"]


def _job_of(dlq: dict) -> str:
    return (dlq["original_key"] or b"").decode(errors="replace")


def _read_all(stack: FaultStack, logical: str, schema: str) -> list[dict | None]:
    """Every record of a topic now (undecodable ones — the poison cells' — as None)."""
    out = []
    for _p, _o, _k, value in read_raw(stack.kafka, logical, timeout_s=60):
        try:
            out.append(stack.codec.decode(value, schema) if value else None)
        except ValidationError:
            out.append(None)
    return out


def api_ready(stack: FaultStack) -> bool:
    try:
        return http("GET", f"http://127.0.0.1:{stack.api_port}/healthz", key=OPERATOR_KEY, timeout=3)[0] == 200
    except OSError:
        return False


__all__ = ["CHECKS", "Outcome", "PIPELINES", "api_ready", "poison_dead_lettered", "scoped"]
