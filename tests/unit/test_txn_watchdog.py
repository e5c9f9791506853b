"""A transactional call that librdkafka leaves blocked past its own timeout (as
send_offsets_to_transaction does when its group coordinator went away) ends the stage with 75
(EX_TEMPFAIL) for its supervisor once that timeout and a grace have passed, naming the call;
a call that answers is simply answered. The watchdog bounds how long a stage's recovery from a
broker fault can take, so it is measured from the call's own timeout, not a fixed minute."""

import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent("""
    import concurrent.futures, time
    from types import SimpleNamespace
    import streams.runtime.txn_processor as tp

    tp.WATCHDOG_GRACE_S = 0.5
    stage = SimpleNamespace(stage="test", _calls=concurrent.futures.ThreadPoolExecutor(1))
    given = []
    def answer(timeout):
        given.append(timeout)
        return "answered"
    print(tp.TransactionalProcessor._watched(stage, "commit_transaction", answer, 2.0), given, flush=True)
    tp.TransactionalProcessor._watched(stage, "send_offsets_to_transaction", lambda timeout: time.sleep(60), 1.0)
    print("returned", flush=True)
""")


def test_a_call_blocked_past_its_timeout_and_the_grace_ends_the_stage_naming_the_call():
    started = time.monotonic()
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    out = child.stdout + child.stderr
    assert "answered [2.0]" in child.stdout, out  # the call is given its own timeout
    assert child.returncode == 75, out
    assert "returned" not in child.stdout
    assert "send_offsets_to_transaction hung 2 s, past its timeout of 1 s" in out, out
    assert took < 30, took  # 1.5 s of watchdog, not the 60 s the call would block
