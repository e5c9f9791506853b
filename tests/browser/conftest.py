"""The operator console in headless Chromium (Debian's `chromium`, driven by Playwright through
`executable_path`; Playwright's own browser download is not needed). Screenshots go to
tests/artifacts/console/ (not committed) and their paths are printed."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from connectors.kafka_admin import apply
from geoflux.settings import KafkaSettings
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.fakes import Answer, FakeReceiver
from tests.integration.alert_helpers import start_pipeline
from tests.integration.geo_helpers import OPERATOR_KEY, http, start_api, start_cli, start_worker, stop

ARTIFACTS = Path(__file__).parents[1] / "artifacts" / "console"


def chromium_path() -> str:
    found = os.environ.get("GEOFLUX_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("chromium not found: apt-get install chromium (deploy/install.sh does it)")
    return found


@pytest.fixture(scope="module")
def console_stack(bootstrap, tmp_path_factory):
    """A whole stack on its own topic prefix: evaluator, alert pipeline, job worker, the demo
    feed and the API, plus a webhook receiver that is down until a test says otherwise."""
    settings = KafkaSettings(bootstrap=bootstrap, partitions=3, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    apply(settings)
    tmp = tmp_path_factory.mktemp("console-stack")
    receiver = FakeReceiver(Answer(503, "down"))
    port = free_port()
    procs = {"api": start_api(settings, port, tmp), "evaluator": start_worker(settings, "0", tmp),
             "jobs": start_cli(settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp),
             "demo": start_cli(settings, ["demo", "--feed-only", "--vehicles", "20", "--interval", "0.3"],
                               "demo", tmp),
             **start_pipeline(settings, tmp)}
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 90, what="the API port")
        wait_for(lambda: http("GET", f"{base}/readyz", key=None)[0] == 200, 60, what="/readyz")
        yield {"base": base, "settings": settings, "receiver": receiver, "tmp": tmp}
    finally:
        for p in procs.values():
            stop(p)
        receiver.close()
        print(f"\nconsole stack logs: {tmp}")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=chromium_path(), headless=True,
                           args=["--no-sandbox", "--disable-dev-shm-usage"])
    try:
        yield b
    finally:
        b.close()
        pw.stop()


@pytest.fixture
def page(browser, console_stack, request):
    """A console page signed in with the operator key; console errors fail the test."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(console_stack["base"] + "/console/")
    pg.get_by_test_id("api-key").fill(OPERATOR_KEY)
    pg.get_by_test_id("use-key").click()
    try:
        yield pg
    finally:
        screenshot(pg, f"{request.node.name}-final")
        ctx.close()
    assert not errors, errors


def screenshot(pg, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
