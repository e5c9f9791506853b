"""Job idempotency, pinned where mutation testing found nothing holding it: the request key's
exact value (it travels to the tiers as the side-effect key, so a release that changed it would
run a computation again) and the refusals' wording (the API's 422 detail)."""

import hashlib

import pytest

from geoflux.errors import ValidationError
from streams.jobs.idempotency import IdempotencyConflict, check_header, decide, request_key

INPUTS = {"distance_m": 5, "geometry": {"type": "Point", "coordinates": [1, 2]}}
CANONICAL = '{"distance_m":5,"geometry":{"coordinates":[1,2],"type":"Point"}}'


def test_the_request_key_is_a_sha256_of_tenant_process_header_and_canonical_inputs():
    def sha(*parts):
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    assert request_key("acme", "buffer", INPUTS, None) == "auto:" + sha("acme", "buffer", "", CANONICAL)
    assert request_key("acme", "buffer", INPUTS, "h1") == "client:" + sha("acme", "buffer", "h1", CANONICAL)


def test_an_invalid_header_is_refused_with_its_rule():
    with pytest.raises(ValidationError) as e:
        check_header("a\tb")
    assert str(e.value) == "Idempotency-Key must be 1-255 printable characters"


@pytest.mark.parametrize("process,what", [("buffer", "different inputs"), ("union", "process 'union'")])
def test_a_reused_header_is_refused_naming_what_differs_and_the_window(process, what):
    earlier = {"job_id": "j1", "idempotency_key": "client:a", "process_id": process, "status": "running",
               "created_ms": 0}
    with pytest.raises(IdempotencyConflict) as e:
        decide(earlier, key="client:b", process_id="buffer", header="h1", now_ms=5, ttl_ms=172_800_000)
    assert str(e.value) == (f"Idempotency-Key 'h1' was used for another request ({what}) within the last "
                            "2 days; a key names one request: send a new key for a new request")
    with pytest.raises(IdempotencyConflict, match=r"within the last 0\.5 days"):
        decide(earlier, key="client:b", process_id="buffer", header="h1", now_ms=5, ttl_ms=43_200_000)
