"""Outliers against a geofence's own history, on event time, with durable baselines and the
evidence in each match. Pure.

- dwell_outlier: an ENTER -> EXIT dwell far outside the fence's own history. Baseline: Welford
  mean and variance of log(1 + dwell seconds) (dwells are skewed; on a log scale "4 sigma"
  means "this many times longer", not "this many minutes"). Guards: no match before
  `min_samples` dwells (default 30); |z| over `z` (default 4: one false alarm in about 30,000
  dwells of a log-normal fence, 3 would be one in 740) AND at least `min_ratio` (default 2)
  times longer (or shorter) than the typical dwell, so a fence whose dwells barely vary does
  not fire on a dwell of 61 s against 60 s; flagged dwells stay out of the baseline, so a run
  of anomalies does not teach it that anomalies are normal (the price: a lasting change of
  behaviour keeps firing until the pattern is edited, which restarts the baseline).
- rate_outlier: entries in a tumbling window far above the fence's rolling baseline
  (exponentially weighted mean and variance over about `baseline_windows` windows, quiet
  windows counted as 0). Guards: `min_windows` closed windows of history (default 12); at
  least `min_count` entries (default 5); the spread used is at least the Poisson noise
  sqrt(mean) and 1, so a fence with 0-1 entries per window does not fire on 3. It fires as soon
  as the open window crosses the threshold (once per window); surge windows stay out of the
  baseline. Default `z` 4: a Poisson fence at 20 entries per window passes it about once in
  10,000 windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from geoflux.errors import ValidationError
from streams.cep.kinds.base import Kind
from streams.cep.kinds.stats import ewma_add, welford_add, welford_std
from streams.cep.outputs import LATE, Match
from streams.cep.specs import MAX_WITHIN_S, EventSpec, number, optional_geofence

MAX_OPEN = 10_000  # entities inside one fence whose ENTER is remembered (dwell_outlier)


@dataclass(frozen=True, slots=True)
class DwellParams:
    z: float
    min_samples: int
    min_ratio: float
    direction: str
    geofence_id: str | None


class DwellOutlier(Kind):
    """State: {"in": {entity: [ENTER time, ENTER event id]}, "s": [n, mean, m2] of
    log(1 + dwell seconds)}."""

    name = "dwell_outlier"

    def parse(self, body: dict) -> DwellParams:
        direction = body.get("direction", "long")
        if direction not in ("long", "short", "both"):
            raise ValidationError("direction must be long, short or both")
        return DwellParams(number(body, "z", 0, 100, default=4), int(number(body, "min_samples", 4, 1e6, default=30)),
                           number(body, "min_ratio", 1, 1e6, default=2, lo_open=False), direction,
                           optional_geofence(body))

    def keyed_by(self, params) -> str:
        return "geofence"

    def initialize(self, p):
        return {"in": {}, "s": [0, 0.0, 0.0]}

    def specs(self, p):
        gid = p.params.geofence_id
        return ((EventSpec("ENTER", gid), True), (EventSpec("EXIT", gid), True))

    def feed(self, p, st, ev, key):
        prm = p.params
        if prm.geofence_id is not None and ev["geofence_id"] != prm.geofence_id:
            return []
        inside, entity = st["in"], ev["entity_id"]
        if ev["event_type"] == "ENTER":
            inside[entity] = [ev["ts_ms"], ev["event_id"]]
            if len(inside) > MAX_OPEN:  # forget the longest-inside tenth (no EXIT will come, or too late)
                for e, _ in sorted(inside.items(), key=lambda kv: kv[1][0])[:MAX_OPEN // 10]:
                    del inside[e]
            return []
        if ev["event_type"] != "EXIT" or entity not in inside:
            return []
        entered, enter_id = inside.pop(entity)
        seconds = max(0.0, (ev["ts_ms"] - entered) / 1000)
        x, s = math.log1p(seconds), st["s"]
        out = []
        if s[0] >= prm.min_samples:
            std = welford_std(s)
            z = (x - s[1]) / std if std > 0 else (math.inf if x != s[1] else 0.0)
            typical = math.expm1(s[1])
            ratio = (seconds + 1) / (typical + 1)
            long_ = z > prm.z and ratio >= prm.min_ratio and prm.direction in ("long", "both")
            short = -z > prm.z and ratio <= 1 / prm.min_ratio and prm.direction in ("short", "both")
            if long_ or short:
                out.append(Match(p, key, (enter_id, ev["event_id"]), entered, ev["ts_ms"],
                                 {"geofence_id": ev["geofence_id"], "entity_id": entity,
                                  "dwell_s": f"{seconds:g}", "typical_dwell_s": f"{typical:.1f}",
                                  "z": f"{z:.2f}", "samples": str(s[0]),
                                  "direction": "long" if long_ else "short"}))
        if not out:
            welford_add(s, x)
        return out

    def empty(self, st):
        return not st["in"] and not st["s"][0]

    def result(self, p, st):
        s = st["s"]
        return {"samples": s[0], "typical_dwell_s": math.expm1(s[1]), "log_std": welford_std(s),
                "inside": len(st["in"])}


@dataclass(frozen=True, slots=True)
class RateParams:
    window_ms: int
    z: float
    min_windows: int
    min_count: int
    alpha: float
    geofence_id: str | None


class RateOutlier(Kind):
    """State: {"m": newest time, "wm": watermark, "c": start of the next window to close,
    "w": open windows [start, entries, fired], "s": [n, mean, variance] of closed windows}."""

    name, ordered, timer, default_lateness_s = "rate_outlier", False, "event", 5

    def parse(self, body: dict) -> RateParams:
        span = number(body, "baseline_windows", 1, 10_000, default=24)
        return RateParams(int(number(body, "window_s", 0, MAX_WITHIN_S) * 1000),
                          number(body, "z", 0, 100, default=4),
                          int(number(body, "min_windows", 1, 1e6, default=12, lo_open=False)),
                          int(number(body, "min_count", 1, 1e6, default=5, lo_open=False)),
                          2 / (span + 1), optional_geofence(body))

    def keyed_by(self, params) -> str:
        return "geofence"

    def initialize(self, p):
        return {"m": 0, "wm": 0, "c": None, "w": [], "s": [0, 0.0, 0.0]}

    def specs(self, p):
        return ((EventSpec("ENTER", p.params.geofence_id), True),)

    def threshold(self, p, st) -> float | None:
        n, mean, var = st["s"]
        if n < p.params.min_windows:
            return None
        spread = max(math.sqrt(max(var, 0.0)), math.sqrt(mean), 1.0)
        return max(mean + p.params.z * spread, p.params.min_count - 0.5)

    def feed(self, p, st, ev, key):
        prm, ts = p.params, ev["ts_ms"]
        if ev["event_type"] != "ENTER" or (prm.geofence_id is not None and ev["geofence_id"] != prm.geofence_id):
            return []
        if ts < st["wm"]:
            return [LATE]
        start = ts - ts % prm.window_ms
        if st["c"] is None or start < st["c"]:  # nothing before it was closed: ts is past the watermark
            st["c"] = start
        st["m"] = max(st["m"], ts)
        self._close(p, st, st["m"] - p.lateness_ms)  # quiet windows count (as 0) before this one is judged
        w = next((w for w in st["w"] if w[0] == start), None)
        if w is None:
            w = [start, 0, 0]
            st["w"].append(w)
        w[1] += 1
        limit = self.threshold(p, st)
        if w[2] or limit is None or w[1] <= limit:
            return []
        w[2] = 1
        n, mean, var = st["s"]
        return [Match(p, key, (ev["event_id"],), start, ts,
                      {"geofence_id": ev["geofence_id"], "window_start_ms": str(start),
                       "window_s": f"{prm.window_ms / 1000:g}", "entries": str(w[1]),
                       "baseline_mean": f"{mean:.2f}", "baseline_std": f"{math.sqrt(max(var, 0)):.2f}",
                       "threshold": f"{limit:.2f}", "windows_seen": str(n)})]

    def _close(self, p, st, watermark: int) -> None:
        if watermark <= st["wm"]:
            return
        st["wm"] = watermark
        size, counts = p.params.window_ms, {w[0]: w for w in st["w"]}
        c, steps = st["c"], 0
        while c is not None and c + size <= watermark:
            w = counts.pop(c, None)
            if w is None and steps > 50 / p.params.alpha:  # a long quiet spell: the baseline is ~0
                c = min([s for s in counts if s > c] + [watermark - watermark % size])
                continue
            if w is None or not w[2]:  # a surge window stays out of the baseline
                ewma_add(st["s"], w[1] if w else 0, p.params.alpha)
            c += size
            steps += 1
        st["c"] = c
        st["w"] = sorted(counts.values())

    def tick(self, p, st, now, settled, key):
        self._close(p, st, settled)
        return []

    def due(self, p, st):
        return st["w"][0][0] + p.params.window_ms if st["w"] else None

    def empty(self, st):
        return False  # the baseline is the point

    def result(self, p, st):
        return {"windows_seen": st["s"][0], "baseline_mean": st["s"][1], "threshold": self.threshold(p, st)}
