"""Job idempotency keys: scoped by tenant and process, covering the inputs; a header names one
request within the window."""

import pytest

from geoflux.errors import ValidationError
from streams.jobs.idempotency import (IdempotencyConflict, check_header, decide, index_key,
                                      request_key)

INPUTS = {"geometry": {"type": "Point", "coordinates": [1, 2]}, "distance_m": 5}
DAY = 86_400_000


def status(key, process="buffer", state="successful", created=0, job="j1"):
    return {"job_id": job, "idempotency_key": key, "process_id": process, "status": state,
            "created_ms": created}


def test_keys_differ_by_tenant_process_inputs_and_header():
    base = request_key("acme", "buffer", INPUTS, None)
    assert base.startswith("auto:")
    assert request_key("acme", "buffer", dict(reversed(list(INPUTS.items()))), None) == base  # canonical
    others = {request_key("globex", "buffer", INPUTS, None), request_key("acme", "simplify", INPUTS, None),
              request_key("acme", "buffer", {**INPUTS, "distance_m": 6}, None),
              request_key("acme", "buffer", INPUTS, "h1")}
    assert base not in others and len(others) == 4
    assert request_key("acme", "buffer", INPUTS, "h1") != request_key("globex", "buffer", INPUTS, "h1")
    # the index finds a header by tenant and header alone, so its reuse for another request is seen
    k1, k2 = request_key("acme", "buffer", INPUTS, "h1"), request_key("acme", "union", INPUTS, "h1")
    assert index_key("acme", "h1", k1) == index_key("acme", "h1", k2) != index_key("globex", "h1", k1)
    assert index_key("acme", None, base) != index_key("globex", None, base)


def test_decide_reuses_within_the_window_and_forgets_after_it():
    key = request_key("acme", "buffer", INPUTS, "h1")
    earlier = status(key, created=1000)
    assert decide(earlier, key=key, process_id="buffer", header="h1", now_ms=1000 + DAY - 1,
                  ttl_ms=DAY).job_id == "j1"
    assert decide(earlier, key=key, process_id="buffer", header="h1", now_ms=1000 + DAY,
                  ttl_ms=DAY).job_id is None
    assert decide(None, key=key, process_id="buffer", header="h1", now_ms=0, ttl_ms=DAY).job_id is None
    for rerun in ("failed", "dismissed"):
        assert decide(status(key, state=rerun), key=key, process_id="buffer", header="h1", now_ms=5,
                      ttl_ms=DAY).job_id is None


def test_a_header_reused_for_another_request_is_refused_with_the_reason():
    key = request_key("acme", "buffer", INPUTS, "h1")
    other_inputs = request_key("acme", "buffer", {**INPUTS, "distance_m": 9}, "h1")
    with pytest.raises(IdempotencyConflict, match="different inputs"):
        decide(status(key), key=other_inputs, process_id="buffer", header="h1", now_ms=5, ttl_ms=DAY)
    other_process = request_key("acme", "simplify", INPUTS, "h1")
    with pytest.raises(IdempotencyConflict, match="process 'buffer'"):
        decide(status(key), key=other_process, process_id="simplify", header="h1", now_ms=5, ttl_ms=DAY)
    # even after the earlier job failed: the key still names that request
    with pytest.raises(IdempotencyConflict):
        decide(status(key, state="failed"), key=other_inputs, process_id="buffer", header="h1",
               now_ms=5, ttl_ms=DAY)


def test_header_limits():
    assert check_header(None) is None and check_header("") is None
    assert check_header("x" * 255) == "x" * 255
    for bad in ("x" * 256, "a\nb"):
        with pytest.raises(ValidationError):
            check_header(bad)
