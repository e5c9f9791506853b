"""What `geoflux demo` configures for the `demo` tenant besides its geofences, so that every page
of the console has something live to show: an `inbox` channel (alerts arrive inside the stack,
no external service needed), alert rules on the demo fences delivering to it, a maintenance
silence, and CEP patterns — a sequence (depot, then the airport), a loitering count (circling
the market) and a dwell (at the depot with no exit in time) — whose matches alert too.

Each object is written only when the tenant has none of that id: a change made in the console
survives the demo's restarts. Everything goes through the same validated stores as the API.
"""

from __future__ import annotations

import time

from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.control.alert_config import AlertConfig
from services.control.config_store import ConfigStore
from streams.cep.patterns import parse_pattern

TENANT = "demo"
INBOX = "inbox"

CHANNELS = [{"name": INBOX, "kind": "inbox", "tenant_id": TENANT, "settings": {"retention_days": 2}}]

RULES = [
    {"rule_id": "restricted-entry", "severity": "high", "source": "geofence",
     "match": {"event_type": ["ENTER"], "geofence_id": ["demo-restricted"]},
     "channels": [INBOX], "title": "{entity_id} entered the restricted zone",
     "body": "at {lon}, {lat} ({ts})", "dedup_window_s": 120,
     "resolve_when": {"event_type": ["EXIT"]}},
    {"rule_id": "depot-dwell", "severity": "warning", "source": "geofence",
     "match": {"event_type": ["DWELL"], "geofence_id": ["demo-depot"]},
     "channels": [INBOX], "title": "{entity_id} is dwelling at the depot", "dedup_window_s": 300},
    {"rule_id": "bridge-crossing", "severity": "info", "source": "geofence",
     "match": {"event_type": ["ENTER"], "geofence_id": ["demo-bridge"]},
     "channels": [INBOX], "title": "{entity_id} is on the bridge"},
    {"rule_id": "job-failed", "severity": "warning", "source": "job",
     "match": {"status": ["failed"]}, "channels": [INBOX],
     "title": "job {job_id} ({process_id}) failed", "body": "{message}"},
]

# the bridge is "under maintenance": its alerts are suppressed (the Alerts page shows them so)
SILENCES = [{"silence_id": "bridge-maintenance",
             "matchers": [{"name": "geofence_id", "value": "demo-bridge"}],
             "comment": "bridge maintenance (demo)", "created_by": "geoflux demo"}]
SILENCE_DAYS = 30


def _alert(title: str) -> dict:
    return {"channels": [INBOX], "title": title, "dedup_window_s": 300}


PATTERNS = [
    {"pattern_id": "depot-then-airport", "severity": "high", "kind": "sequence", "within_s": 1800,
     "steps": [{"event_type": "ENTER", "geofence_id": "demo-depot"},
               {"event_type": "ENTER", "geofence_id": "demo-airport"}],
     "alert": _alert("{key}: depot, then the airport apron")},
    {"pattern_id": "market-loitering", "severity": "warning", "kind": "count", "within_s": 900,
     "event": {"event_type": "ENTER", "geofence_id": "demo-market"}, "at_least": 2, "per": "entity",
     "alert": _alert("{key} keeps circling the market square")},
    {"pattern_id": "depot-dwell-20s", "severity": "info", "kind": "absence", "within_s": 20,
     "trigger": {"event_type": "ENTER", "geofence_id": "demo-depot"},
     "expected": {"event_type": "EXIT", "geofence_id": "demo-depot"},
     "alert": _alert("{key} stayed at the depot over 20 s")},
]


def ensure_demo_config(kafka: KafkaSettings, codec: AvroCodec) -> dict[str, int]:
    """Writes what the demo tenant is missing; how many of each it wrote."""
    config = AlertConfig(kafka, codec).start()
    patterns = ConfigStore(kafka, codec, topic("geo.cep-patterns", kafka), "pattern",
                           lambda body, pid: parse_pattern(body, pid), "pattern_id",
                           config.channels.producer).start()
    now = int(time.time() * 1000)
    silences = [dict(s, starts_ms=now, ends_ms=now + SILENCE_DAYS * 86_400_000) for s in SILENCES]
    plan = [("channels", config.channels, CHANNELS, "name"), ("rules", config.rules, RULES, "rule_id"),
            ("silences", config.silences, silences, "silence_id"),
            ("patterns", patterns, PATTERNS, "pattern_id")]
    written = {}
    try:
        for what, store, objects, id_field in plan:
            missing = [o for o in objects if not store.exists(o[id_field], TENANT)]
            for obj in missing:
                store.put({**obj, "tenant_id": TENANT})
            written[what] = len(missing)
    finally:
        patterns.close()
        config.close()
    return written
