"""Process code for the warm pool's tests: module-level, so the pool's children import it."""

import ctypes
import os
import time

from geoflux.errors import TransientError


def target(process_id: str, inputs: dict, progress) -> dict:
    if process_id == "pid":
        return {"pid": os.getpid()}
    if process_id == "sleep":
        progress(os.getpid())  # the tests' way to learn which child runs it
        for i in range(int(inputs["s"] * 10)):
            time.sleep(0.1)
            progress(i)
        return {"pid": os.getpid()}
    if process_id == "chatter":  # progress as fast as it goes: the parent's pipe is never quiet
        progress(os.getpid())
        end = time.monotonic() + inputs["s"]
        while time.monotonic() < end:
            progress(1)
            time.sleep(0.0005)
        return {"pid": os.getpid()}
    if process_id == "transient":
        raise TransientError("the database blinked")
    if process_id == "bug":
        raise ValueError("bad input")
    if process_id == "segfault":
        ctypes.string_at(0)  # a crash in native code
    if process_id == "echo":
        return {"n": len(inputs["blob"])}
    raise AssertionError(process_id)
