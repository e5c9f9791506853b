"""What an operator does in the console, in a real browser against the real stack: draw a
geofence and watch the demo feed enter it, edit a rule into a validation error, redrive a dead
letter and ack/resolve its alert, follow a job to 100%."""

import json

import pytest
from playwright.sync_api import expect

from schemas.codec import AvroCodec
from tests.browser.conftest import screenshot
from tests.conftest import wait_for
from tests.fakes import Answer
from tests.integration.alert_helpers import geofence_event, publish_events
from tests.integration.geo_helpers import TENANT_KEYS, http

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_console_is_served_without_a_key_and_entities_need_one(console_stack):
    import urllib.request

    base = console_stack["base"]
    with urllib.request.urlopen(base + "/console/", timeout=10) as resp:
        assert resp.status == 200 and b"console.js" in resp.read()
    with urllib.request.urlopen(base + "/console/console.js", timeout=10) as resp:
        assert resp.status == 200 and len(resp.read()) > 100_000  # Leaflet and outlines bundled
    assert http("GET", base + "/api/v1/entities", key=None)[0] == 401
    wait_for(lambda: http("GET", base + "/api/v1/entities")[1]["total"] >= 10, 60,
             what="demo vehicles' positions")
    assert http("GET", base + "/api/v1/entities", key=TENANT_KEYS["acme"])[1]["total"] == 0
    status, ready = http("GET", base + "/readyz", key=None)
    assert status == 200 and ready["checks"]["kafka"]["ok"]


def test_draw_a_geofence_and_watch_the_demo_feed_enter_it(page, console_stack):
    base = console_stack["base"]
    expect(page.get_by_test_id("fence-item")).to_have_count(5, timeout=60_000)  # the demo's fences
    expect(page.locator("path.entity").first).to_be_attached(timeout=30_000)  # vehicles on the map
    expect(page.get_by_test_id("stream-state")).to_have_text("stream: live", timeout=30_000)

    page.get_by_test_id("draw").click()
    box = page.get_by_test_id("map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for dx, dy in ((-150, -100), (150, -100), (150, 100), (-150, 100)):  # ~7 x 4.6 km around the centre
        page.mouse.click(cx + dx, cy + dy)
    page.get_by_test_id("finish").click()
    page.get_by_test_id("fence-name").fill("Drawn in the console")
    page.get_by_test_id("fence-tenant").fill("demo")
    page.get_by_test_id("fence-save").click()
    expect(page.get_by_test_id("flash")).to_contain_text("Saved geofence Drawn in the console")
    [fence] = [f for f in http("GET", base + "/api/v1/geofences?limit=100")[1]["features"]
               if f["properties"]["name"] == "Drawn in the console"]
    assert fence["geometry"]["type"] == "Polygon" and len(fence["geometry"]["coordinates"][0]) == 5
    assert fence["properties"]["tenant_id"] == "demo"
    screenshot(page, "map-drawn-geofence")

    enter = page.locator(f'[data-testid=event][data-type=ENTER][data-geofence="{fence["id"]}"]')
    expect(enter.first).to_be_visible(timeout=90_000)
    expect(page.locator("path.event-ENTER").first).to_be_attached()
    screenshot(page, "map-enter-event")

    # editing: rename it from the list, the registry has version 2
    page.locator(f'[data-testid=fence-item][data-id="{fence["id"]}"] a').click()
    page.get_by_test_id("fence-name").fill("Drawn and renamed")
    page.get_by_test_id("fence-save").click()
    expect(page.get_by_test_id("flash")).to_contain_text("Saved geofence Drawn and renamed")
    got = http("GET", f"{base}/api/v1/geofences/{fence['id']}")[1]
    assert got["properties"]["name"] == "Drawn and renamed" and got["properties"]["version"] == 2


def test_edit_a_rule_and_see_the_api_validation_error(page, console_stack):
    base = console_stack["base"]
    ch = {"name": "edit-hook", "kind": "webhook", "tenant_id": "acme",
          "settings": {"url": console_stack["receiver"].url + "/edit", "secret": "s3cret"}}
    assert http("POST", base + "/api/v1/alerts/channels", ch)[0] == 201
    rule = {"rule_id": "edit-me", "tenant_id": "acme", "severity": "high", "channels": ["edit-hook"],
            "match": {"event_type": "EXIT"}, "title": "{entity_id} left {geofence_id}"}
    status, body = http("POST", base + "/api/v1/alerts/rules", rule)
    assert status == 201, body
    page.get_by_test_id("tab-rules").click()
    row = page.locator('[data-testid=rules-row][data-id="edit-me"]')
    row.get_by_test_id("rules-edit").click()
    editor = page.get_by_test_id("rules-editor")
    edited = json.loads(editor.input_value())
    assert edited["rule_id"] == "edit-me"
    editor.fill(json.dumps({**edited, "title": "{speed} is too fast"}))
    page.get_by_test_id("rules-save").click()
    expect(page.get_by_test_id("rules-editor-error")).to_contain_text("unknown field")
    screenshot(page, "rule-validation-error")
    assert http("GET", base + "/api/v1/alerts/rules/edit-me")[1]["version"] == 1  # nothing written

    editor.fill(json.dumps({**edited, "severity": "critical"}))
    page.get_by_test_id("rules-save").click()
    expect(page.get_by_test_id("rules-editor-error")).to_be_empty()
    expect(row).to_contain_text("critical")
    assert http("GET", base + "/api/v1/alerts/rules/edit-me")[1]["version"] == 2


def test_redrive_a_dead_letter_then_ack_and_resolve_its_alert(page, console_stack):
    base, receiver = console_stack["base"], console_stack["receiver"]
    ch = {"name": "hook", "kind": "webhook", "tenant_id": "acme", "settings": {"url": receiver.url + "/h", "secret": "s3cret"}}
    assert http("POST", base + "/api/v1/alerts/channels", ch)[0] == 201
    rule = {"rule_id": "enter", "tenant_id": "acme", "severity": "high", "channels": ["hook"],
            "match": {"event_type": "ENTER"}, "title": "{entity_id} in {geofence_id}"}
    assert http("POST", base + "/api/v1/alerts/rules", rule)[0] == 201
    publish_events(console_stack["settings"], AvroCodec(), [geofence_event(1)])
    wait_for(lambda: http("GET", base + "/api/v1/dlq?queue=alerts")[1]["total"] == 1, 90,
             what="the alert's delivery in the DLQ")
    # the DLQ record and the alert's status are written by different stages: wait for both
    [alert] = wait_for(lambda: http("GET", base + "/api/v1/alerts?status=DEAD_LETTERED")[1]["items"], 60,
                       what="the alert's status DEAD_LETTERED")

    page.get_by_test_id("tab-alerts").click()
    arow = page.locator(f'[data-testid=alert-row][data-id="{alert["alert_id"]}"]')
    expect(arow.get_by_test_id("alert-status")).to_have_text("DEAD_LETTERED", timeout=15_000)
    expect(arow.get_by_test_id("alert-channel")).to_contain_text("hook: DEAD_LETTERED · 3 attempt(s)")
    screenshot(page, "alerts-dead-lettered")

    page.get_by_test_id("tab-dlq").click()
    drow = page.get_by_test_id("dlq-row")
    expect(drow).to_have_count(1, timeout=15_000)
    drow.get_by_test_id("dlq-show").click()
    expect(page.get_by_test_id("dlq-detail")).to_contain_text('"channel": "hook"')
    screenshot(page, "dlq-before-redrive")
    receiver.default = Answer(200, "ok")
    drow.get_by_test_id("dlq-redrive").click()
    expect(page.get_by_test_id("dlq-detail")).to_contain_text("alerts.deliveries")
    expect(page.get_by_test_id("dlq-row")).to_have_count(0, timeout=30_000)
    wait_for(lambda: any(r.path == "/h" and r.status == 200 for r in receiver.requests), 30,
             what="the redriven delivery")

    page.get_by_test_id("tab-alerts").click()
    expect(arow.get_by_test_id("alert-status")).to_have_text("SENT", timeout=30_000)
    arow.get_by_test_id("alert-ack").click()
    expect(arow.get_by_test_id("alert-status")).to_have_text("ACKNOWLEDGED", timeout=30_000)
    arow.get_by_test_id("alert-resolve").click()
    expect(arow.get_by_test_id("alert-status")).to_have_text("RESOLVED", timeout=30_000)
    screenshot(page, "alerts-resolved")

    page.get_by_test_id("tab-sla").click()
    expect(page.get_by_test_id("sla-row").first).to_be_visible(timeout=15_000)
    screenshot(page, "sla")


def test_follow_a_job_to_100_percent(page, console_stack):
    page.get_by_test_id("tab-jobs").click()
    page.get_by_test_id("job-process").select_option("sleep")
    page.get_by_test_id("job-inputs").fill(json.dumps({"seconds": 4}))
    page.get_by_test_id("job-submit").click()
    expect(page.get_by_test_id("flash")).to_contain_text("Job ")
    row = page.get_by_test_id("job-row").first
    expect(row).to_have_attribute("data-status", "running", timeout=30_000)
    progress_seen = int(row.get_attribute("data-progress"))
    screenshot(page, "job-running")
    expect(row).to_have_attribute("data-status", "successful", timeout=60_000)
    expect(row.get_by_test_id("job-progress")).to_have_text(" 100%")
    assert progress_seen < 100
    row.get_by_test_id("job-show-results").click()
    expect(page.get_by_test_id("job-results")).to_contain_text('"slept_s": 4')
    screenshot(page, "job-done")


def test_a_tenant_key_sees_its_tenant_only(browser, console_stack):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    try:
        pg.goto(console_stack["base"] + "/console/#dlq")
        pg.get_by_test_id("api-key").fill(TENANT_KEYS["acme"])
        pg.get_by_test_id("use-key").click()
        expect(pg.get_by_test_id("dlq-error")).to_contain_text("needs an operator key")
        pg.get_by_test_id("tab-map").click()
        expect(pg.get_by_test_id("stream-state")).to_have_text("stream: live", timeout=30_000)
        expect(pg.get_by_test_id("fence-item")).to_have_count(0)  # the demo's fences are tenant demo
        screenshot(pg, "tenant-acme")
    finally:
        ctx.close()
