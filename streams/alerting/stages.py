"""The transactional stages of the alert pipeline, and what they share.

    geo.geofence-events ─┐
    geo.cep-matches ─────┼─ AlertRouterStage ─ alerts.candidates (by tenant) ─ AlertGateStage ─┬─ alerts.alerts
    jobs.status ─────────┘  rules                                          silences  ├─ alerts.deliveries
                                                                                     └─ alerts.lifecycle (source resolves)
    alerts.alerts + alerts.outcomes + alerts.lifecycle ─ AlertStatusStage ─┬─ alerts.status (compacted, its changelog)
                                            escalation policies            └─ alerts.deliveries (escalations, resolutions)

The stages live in `router_stage.py`, `gate_stage.py` and `status_stage.py`. Each is a
`TransactionalProcessor`: its outputs and offsets commit together, so a crash never duplicates
or loses an alert. An alert is written (PENDING) before any delivery exists.
"""

from __future__ import annotations

from geoflux.settings import AlertSettings


def batch_wait(given: float | None) -> float:
    """How long a router or status batch waits to fill: the one given, else the setting's."""
    return AlertSettings().batch_wait_s if given is None else given


def delivery_request(alert: dict, channel: str, now: int, fallback_for: str | None = None,
                     action: str = "trigger", purpose: str = "") -> dict:
    """`purpose` tells apart deliveries of one alert to one channel (an escalation level, the
    resolution): it is part of the delivery id, the receiver's idempotency key."""
    suffix = f":{purpose}" if purpose else ""
    return {"delivery_id": f"{alert['alert_id']}:{channel}{suffix}", "alert_id": alert["alert_id"],
            "tenant_id": alert["tenant_id"], "channel": channel,
            "fallback_channel": None if fallback_for else alert.get("fallback_channel"),
            "fallback_for": fallback_for, "severity": alert["severity"], "action": action,
            "title": alert["title"], "body": alert["body"], "labels": alert["labels"],
            "alert_created_ms": alert["created_ms"], "attempt": 1, "outcome": None,
            "error_class": None, "error_message": None, "first_failure_ms": None,
            "not_before_ms": now, "created_ms": now}
