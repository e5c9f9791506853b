"""A SIGKILLed child is reported as killed by SIGKILL as soon as it looks dead: a process with
many threads looks dead (a zombie) before it can be waited for, and the supervisor read that
window as "not our child"."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.devstack import local_process
from services.devstack.local_process import ManagedProcess, exit_cause, free_port, pid_alive

# threads that each hold the process in the kernel's exit path a little longer
MANY_THREADS = """
import threading, time
for _ in range(200):
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
print("ready", flush=True)
time.sleep(3600)
"""


def test_a_killed_threaded_child_is_reported_killed_by_sigkill(tmp_path):
    for attempt in range(5):
        log = tmp_path / f"child{attempt}.log"
        proc = ManagedProcess("child", tmp_path / "child.pid", [log])
        pid = proc.spawn([sys.executable, "-c", MANY_THREADS], log)
        deadline = time.monotonic() + 30
        while "ready" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the child never started its threads"
            time.sleep(0.02)
        os.killpg(pid, signal.SIGKILL)
        while pid_alive(pid):  # what the supervisor checks before asking why it ended
            assert time.monotonic() < deadline, "the child outlived SIGKILL"
            time.sleep(0.001)
        assert exit_cause(proc.exit_code()) == "killed by SIGKILL"


def test_a_child_not_spawned_here_has_no_exit_status(tmp_path):
    assert exit_cause(ManagedProcess("x", tmp_path / "x.pid", []).exit_code()) == \
        "exited (not our child: no exit status)"


def test_a_port_is_released_only_once_its_listener_is_gone_even_with_a_full_accept_queue():
    import socket

    from services.devstack.local_process import free_port, port_is_open, port_is_released, wait_released

    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(0)  # never accepts: the queue fills, as a killed broker's does
    dialled = []
    try:
        for _ in range(8):
            c = socket.socket()
            c.settimeout(0.2)
            try:
                c.connect(("127.0.0.1", port))
            except OSError:
                pass
            dialled.append(c)
        assert not port_is_released("127.0.0.1", port)
        assert not wait_released("127.0.0.1", (port,), 0.3)
    finally:
        for c in dialled:
            c.close()
        server.close()
    assert wait_released("127.0.0.1", (port,), 5)
    assert not port_is_open("127.0.0.1", port)


@pytest.fixture
def own_reservations(tmp_path, monkeypatch):
    """free_port's reservations in a folder of this test's own, for it and its subprocesses."""
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path / f"geoflux-ports-{os.getuid()}"


def test_free_port_never_hands_out_a_port_twice_nor_one_another_live_process_holds(own_reservations):
    ours = [free_port() for _ in range(2000)]  # a sixth of the range: random picks meet it often
    assert len(set(ours)) == len(ours)
    theirs = subprocess.run(
        [sys.executable, "-c", "from services.devstack.local_process import free_port\n"
                               "print(*(free_port() for _ in range(300)))"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]).stdout.split()
    assert len(theirs) == 300 and not set(map(int, theirs)) & set(ours)


def test_a_reservation_ends_with_its_process(own_reservations, monkeypatch):
    port = free_port()
    monkeypatch.setattr(local_process.random, "randrange", lambda *_a: port)  # every pick: this port
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (own_reservations / str(port)).write_text(str(holder.pid))
        assert free_port() != port  # a live holder: the kernel's choice instead
    finally:
        holder.kill()
        holder.wait()
    assert free_port() == port  # its holder is gone: free again
