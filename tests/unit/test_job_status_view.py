"""The jobs status view over each store backend: lookups, tenant lists newest first, counts,
quota usage, the idempotency index (newest job of a key wins, expiry) — fed records directly,
as the topic reader would."""

import os
import subprocess
import sys
import time

import pytest

from geoflux.settings import KafkaSettings, StreamSettings
from schemas.codec import AvroCodec
from streams.jobs.idempotency import index_key
from streams.jobs.status_view import StatusView, open_private_store
from streams.state import open_store

CODEC = AvroCodec()


NOW = 0


@pytest.fixture(autouse=True)
def now():
    """The view counts the last minute's jobs by the wall clock: times relative to this test's now."""
    global NOW
    NOW = int(time.time() * 1000)


@pytest.fixture(params=["memory", "rocksdb"])
def view(request, tmp_path):
    v = StatusView(KafkaSettings(bootstrap="127.0.0.1:1"), CODEC, open_store(request.param, tmp_path / "s"))
    yield v
    v.store.close()


def st(job, tenant="acme", status="accepted", created=None, process="buffer", key=None, header=None):
    created = created or NOW
    return {"job_id": job, "tenant_id": tenant, "process_id": process, "status": status, "progress": 0,
            "message": None, "tier": None, "attempt": 0, "created_ms": created, "started_ms": None,
            "finished_ms": None, "updated_ms": created, "idempotency_key": key or f"auto:{job}",
            "priority": 5, "idempotency_header": header}


def feed(view, rec):
    view._record(rec, CODEC.encode("t", "JobStatus", rec))


def test_lookup_lists_newest_first_and_counts(view):
    for i in range(5):
        feed(view, st(f"a{i}", created=NOW - 10_000 + i))
    feed(view, st("g1", tenant="globex", created=NOW))
    feed(view, st("a1", status="running", created=NOW - 10_000 + 1))
    feed(view, st("a2", status="successful", created=NOW - 10_000 + 2))
    assert view.get("a1")["status"] == "running" and view.get("nope") is None
    items, total = view.page("acme", None, None, 0, 3)
    assert [s["job_id"] for s in items] == ["a4", "a3", "a2"] and total == 5
    items, total = view.page("acme", None, None, 3, 10)
    assert [s["job_id"] for s in items] == ["a1", "a0"]
    items, total = view.page("acme", "accepted", None, 0, 10)
    assert [s["job_id"] for s in items] == ["a4", "a3", "a0"] and total == 3
    assert view.page("acme", None, "union", 0, 10) == ([], 0)
    items, total = view.page(None, None, None, 0, 2)  # operators: every tenant
    assert [s["job_id"] for s in items] == ["g1", "a4"] and total == 6
    assert view.usage("acme", NOW)[0] == 4  # accepted or running
    assert view.usage("globex", NOW) == (1, [NOW])


def test_quota_window_forgets_old_submissions(view):
    feed(view, st("old", created=NOW - 120_000))
    feed(view, st("new", created=NOW - 1000))
    active, recent = view.usage("acme", NOW)
    assert active == 2 and recent == [NOW - 1000]
    assert view.usage("acme", NOW + 60_000) == (2, [])


def test_idempotency_index_newest_job_wins_and_expires(view):
    idx = index_key("acme", "h1", "client:k")
    feed(view, st("second", created=NOW, key="client:k", header="h1"))
    feed(view, st("first", created=NOW - 5000, key="client:k", header="h1"))  # read later, older
    assert view.indexed_job(idx)["job_id"] == "second"
    assert view.indexed_job(index_key("globex", "h1", "client:k")) is None
    feed(view, st("other", created=NOW - 100_000, key="auto:x"))
    assert view.expire_index(NOW - 50_000) == 1
    assert view.indexed_job(index_key("acme", None, "auto:x")) is None
    assert view.indexed_job(idx)["job_id"] == "second"
    assert view.expire_index(NOW + 1) == 1 and view.indexed_job(idx) is None
    assert view.get("second") is not None  # statuses stay; only the index forgets


def test_own_writes_never_overwrite_what_the_topic_already_said(view):
    feed(view, st("j", status="running"))
    view.record_own(st("j", status="accepted"))  # our accepted, after the worker's running
    assert view.get("j")["status"] == "running"
    view.record_own(st("j", status="dismissed"), replacing="accepted")
    assert view.get("j")["status"] == "running"
    view.record_own(st("k"))
    assert view.get("k")["status"] == "accepted" and view.usage("acme", NOW)[0] == 2


def test_private_store_removes_leftovers_of_dead_and_zombie_processes(tmp_path):
    """A leftover store of a process that is gone, or exited and not yet reaped (a zombie), is
    removed at the next start; a live process's store is kept."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # exited, not waited for: a zombie until poll() below
        with open(f"/proc/{zombie.pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.01)
    else:
        pytest.fail("the child did not exit within 10 s")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        views = tmp_path / "views"
        left = {name: views / f"v-{proc.pid}-abcdef01" for name, proc in
                (("zombie", zombie), ("gone", gone), ("live", live))}
        for d in left.values():
            d.mkdir(parents=True)
        store, path = open_private_store("v", StreamSettings(data_dir=str(tmp_path), store="memory"))
        store.close()
        assert {name: d.exists() for name, d in left.items()} == {"zombie": False, "gone": False, "live": True}
        assert path.name.startswith(f"v-{os.getpid()}-")
    finally:
        live.kill()
        live.wait()
        zombie.wait()
