"""OGC API - Processes through OWSLib, as a user's script drives it (issue 18, item 5).

`geoflux api` and a job worker run against the real broker. The script starts at the
landing page with an API key in a header, reads the conformance classes, lists and describes
the processes, executes a small job synchronously (the results come back) and asynchronously
(201 and a Location; it polls the job and fetches the results by the links the status gives).
OWSLib has no job calls of its own: a script follows the links, as here."""

import uuid
from urllib.parse import urljoin

import pytest
import requests
from owslib.ogcapi.processes import Processes

from connectors.kafka_admin import apply
from geoflux.settings import KafkaSettings
from services.devstack.local_process import free_port, port_is_open
from services.api.routes_ogc import CONF, REL
from tests.conftest import wait_for
from tests.integration.geo_helpers import TENANT_KEYS, start_api, start_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

AUTH = {"Authorization": f"Bearer {TENANT_KEYS['acme']}"}
SQUARE = {"type": "Polygon", "coordinates": [[[13.3, 52.5], [13.4, 52.5], [13.4, 52.6], [13.3, 52.6],
                                              [13.3, 52.5]]]}


@pytest.fixture(scope="module")
def base(bootstrap, tmp_path_factory):
    kafka = KafkaSettings(bootstrap=bootstrap, partitions=3, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    apply(kafka)
    logs, port = tmp_path_factory.mktemp("ogc"), free_port()
    procs = [start_api(kafka, port, logs), start_cli(kafka, ["worker", "jobs", "--no-postgis"], "jobs", logs)]
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")
        yield f"http://127.0.0.1:{port}/"
    finally:
        for p in procs:
            stop(p)


def test_discovery_without_a_key_then_processes_with_one(base):
    anonymous = Processes(base)  # the landing page and conformance are open
    rels = {link["rel"]: link for link in anonymous.links}
    assert {"self", "service-desc", "service-doc", REL + "conformance", REL + "processes",
            REL + "job-list"} <= set(rels)
    assert all(link["href"].startswith(base.rstrip("/")) and link["type"] for link in anonymous.links)
    conforms = anonymous.conformance()["conformsTo"]
    assert {CONF + "core", CONF + "ogc-process-description", CONF + "json"} <= set(conforms)
    with pytest.raises(RuntimeError, match="API key"):  # the processes need a key
        anonymous.processes()
    definition = requests.get(rels["service-desc"]["href"], timeout=30)
    assert definition.ok and definition.json()["openapi"] == "3.1.0"
    assert "/processes/{id}/execution" in definition.json()["paths"]
    assert "text/html" in requests.get(rels["service-doc"]["href"], timeout=30).headers["Content-Type"]


def test_a_script_lists_describes_and_executes_sync_and_async(base):
    p = Processes(base, headers=dict(AUTH))
    ids = {proc["id"] for proc in p.processes()}
    assert {"buffer", "area-length", "union"} <= ids
    buffer = p.process("buffer")
    assert {"geometry", "distance_m"} <= set(buffer["inputs"]) and "geometry" in buffer["outputs"]
    assert "sync-execute" in buffer["jobControlOptions"] and "async-execute" in buffer["jobControlOptions"]

    done = p.execute("buffer", {"geometry": SQUARE, "distance_m": 250})  # Prefer: respond-sync
    assert done["geometry"]["type"] == "Polygon"
    ring = done["geometry"]["coordinates"][0]
    assert min(x for x, _ in ring) < 13.3 and max(y for _, y in ring) > 52.6  # grew by 250 m

    status = p.execute("area-length", {"geometry": SQUARE}, async_=True)
    assert status["status"] in ("accepted", "running", "successful") and status["type"] == "process"
    monitor = urljoin(base, p.response_headers["Location"])
    assert monitor.endswith(f"/jobs/{status['jobID']}")

    def finished():
        body = requests.get(monitor, headers=AUTH, timeout=30).json()
        return body if body["status"] in ("successful", "failed", "dismissed") else None

    final = wait_for(finished, 60, interval_s=0.2, what="the async job")
    assert final["status"] == "successful", final
    results_link = next(link for link in final["links"] if link["rel"].endswith("/results"))
    results = requests.get(urljoin(base, results_link["href"]), headers=AUTH, timeout=30).json()
    assert 7.4e7 < results["area_m2"] < 7.7e7  # 0.1° x 0.1° at 52.55° N: about 6.78 km x 11.13 km
    # the job is in the job list, which only the key's tenant sees
    listed = requests.get(urljoin(base, "jobs"), headers=AUTH, params={"processID": "area-length"},
                          timeout=30).json()
    assert status["jobID"] in {j["jobID"] for j in listed["jobs"]}
