"""freeze_long_lived: garbage collected first, then what is alive moved out of the collector's walks."""

import gc
import weakref

from streams.runtime.heap import freeze_long_lived


class Node:
    def __init__(self) -> None:
        self.other = self


def test_garbage_is_collected_before_the_freeze_and_live_objects_are_frozen():
    gc.disable()  # no collection of its own may free the cycle before the one asked for
    try:
        garbage = Node()
        dead = weakref.ref(garbage)
        del garbage  # a cycle: only the cyclic collector frees it
        assert dead() is not None
        live = [Node() for _ in range(100)]
        frozen = freeze_long_lived()
        assert dead() is None, "a garbage cycle was frozen instead of freed"
        # other threads of the test process (clients left by earlier tests) may free frozen
        # objects meanwhile: the count can only fall after a freeze (a CI run saw 2 fewer)
        assert frozen >= len(live) and 0 < gc.get_freeze_count() <= frozen
        walked = {id(o) for o in gc.get_objects()}
        assert not any(id(n) in walked for n in live), \
            "live objects are still walked by a collection"
    finally:
        gc.unfreeze()
        gc.enable()
