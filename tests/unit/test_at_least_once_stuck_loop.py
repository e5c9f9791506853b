"""A rebalance in the poll thread hands forgetting the revoked partitions to the event loop, the
only writer of the offset tracker and the work queue. A loop that does not answer is stuck: the
worker exits with 75 (EX_TEMPFAIL) for its supervisor rather than write under it."""

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import asyncio, threading, time
    from types import SimpleNamespace
    import streams.runtime.at_least_once as alo

    alo.FORGET_WAIT_S = 0.5 if {stuck} else 30  # a free loop answers whatever the machine's load
    forgotten = []
    worker = SimpleNamespace(stage="test", _forget=forgotten.append)
    worker._forget_now = lambda tps: alo.AtLeastOnceWorker._forget_now(worker, tps)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    if {stuck}:
        loop.call_soon_threadsafe(time.sleep, 30)  # a handler blocking the loop
    alo.AtLeastOnceWorker._forget_from_poll_thread(worker, loop, {{("t", 0)}})
    print("forgotten", forgotten, flush=True)
""")


def run_child(stuck: bool) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD.format(stuck=stuck)], capture_output=True,
                          text=True, timeout=60)


def test_a_stuck_loop_ends_the_worker_with_75_and_nothing_is_changed_from_the_poll_thread():
    child = run_child(stuck=True)
    assert child.returncode == 75, child.stderr
    assert "forgotten" not in child.stdout
    assert "the event loop is stuck" in child.stdout + child.stderr


def test_a_free_loop_forgets_the_partitions_itself():
    child = run_child(stuck=False)
    assert child.returncode == 0, child.stderr
    assert "forgotten [{('t', 0)}]" in child.stdout
