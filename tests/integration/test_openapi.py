"""The OpenAPI document stays honest: every route the app registers is described, every
described operation is registered, every path of the README's HTTP API table is in it, and
it is a document schemathesis (a strict OpenAPI 3.1 reader) loads without an error.

A route added without a description fails `test_every_route_is_described` with its method
and path: add an `Op` for it in services/api/openapi_paths.py (services/api/openapi.py says how)."""

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest
import schemathesis
from aiohttp.test_utils import TestClient, TestServer

from connectors.kafka_admin import apply
from geoflux.settings import ApiSettings, GeofenceSettings, KafkaSettings
from schemas.codec import AvroCodec
from services.api import openapi
from services.api.app import create_app
from services.api.openapi import Op, document, mismatches
from services.api.openapi_paths import OPERATIONS
from tests.integration.geo_helpers import API_KEYS

pytestmark = [pytest.mark.kafka]
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def seen(bootstrap):
    """The real app, built once as `geoflux api` builds it: its routes, and what it serves."""
    kafka = KafkaSettings(bootstrap=bootstrap, partitions=1, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    apply(kafka)

    async def run():
        app = create_app(kafka, GeofenceSettings(), ApiSettings(keys=API_KEYS), AvroCodec())
        async with TestClient(TestServer(app)) as client:
            doc = await client.get(openapi.OPENAPI_PATH)
            return {"mismatches": mismatches(app, OPERATIONS), "routes": openapi.registered(app),
                    "doc": (doc.status, doc.headers["Content-Type"], await doc.text()),
                    "landing": (await client.get("/")).status,
                    "processes": (await client.get("/processes")).status}
    return asyncio.run(run())


def test_every_route_is_described_and_every_description_is_routed(seen):
    undescribed, unrouted = seen["mismatches"]
    assert not undescribed, ("routes without a description in services/api/openapi_paths.py: "
                             f"{sorted(undescribed)}")
    assert not unrouted, f"described but not registered: {sorted(unrouted)}"
    assert len(seen["routes"]) == len(OPERATIONS) > 60  # the walk saw the whole app


def test_the_document_is_served_without_a_key_and_loads(seen):
    status, ctype, text = seen["doc"]
    assert status == 200 and ctype == openapi.MEDIA_TYPE
    assert seen["landing"] == 200 and seen["processes"] == 401  # discovery is open, data is not
    doc = json.loads(text)
    assert doc["openapi"] == "3.1.0" and doc == json.loads(json.dumps(document(OPERATIONS)))
    loaded = schemathesis.openapi.from_dict(doc)
    results = list(loaded.get_all_operations())
    errors = [r.err() for r in results if not hasattr(r, "ok")]
    assert not errors, errors
    assert len(results) == len(OPERATIONS)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["apiKey"]["name"] == "X-API-Key"
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            needs_key = op.get("security") != []
            assert not needs_key or "401" in op["responses"], (method, path)
            for code, resp in op["responses"].items():
                if code.startswith("4"):  # every client error is a problem document
                    assert resp == {"$ref": f"#/components/responses/E{code}"}, (method, path, code)


def test_readme_http_api_paths_are_described():
    table = README.read_text().split("## HTTP API", 1)[1].split("\n\n", 2)[1]
    described = set(document(OPERATIONS)["paths"])
    tokens = {t.split("?")[0].split()[-1] for t in re.findall(r"`([^`]*)`", table)}
    paths = {t for t in tokens if t.startswith("/")}
    assert len(paths) > 25
    # a row may name a path relative to the one before it (`/evaluate/batch`, `/resolve`)
    missing = [p for p in paths if not any(d == p or d.endswith(p) for d in described)]
    assert not missing, f"README paths not in the OpenAPI document: {missing}"


def test_a_path_described_twice_is_refused():
    op = Op("GET", "/x", "x", "t", {200: {}})
    with pytest.raises(ValueError, match="described twice"):
        document([op, op])

