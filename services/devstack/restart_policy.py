"""When `geoflux up` starts a part again after it exited, and when it stops trying. Pure.

A part that exits is started again after a backoff that doubles from `initial_s` to `max_s`;
once it has run healthy for `reset_after_s` the backoff starts from `initial_s` again (an exit
a day after the last one is not part of a crash loop). `loop_exits` exits within
`loop_window_s` is a crash loop: the supervisor gives up on that part alone, so one broken
worker never takes the others down and never burns the machine restarting for ever.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    initial_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0
    loop_exits: int = 5
    loop_window_s: float = 120.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("restart backoff needs 0 < initial_s <= max_s")
        if self.loop_exits < 1 or self.loop_window_s <= 0:
            raise ValueError("a crash loop needs loop_exits >= 1 and loop_window_s > 0")


@dataclass(slots=True)
class RestartTracker:
    """One part's exit history under a policy. Times are monotonic seconds."""

    policy: RestartPolicy
    streak: int = 0  # exits since the part last ran healthy: the backoff's exponent
    exits: list[float] = field(default_factory=list)  # exit times within the loop window

    def on_exit(self, now: float, started_at: float) -> float | None:
        """The delay before starting the part again, or None: a crash loop, give up."""
        p = self.policy
        if now - started_at >= p.reset_after_s:
            self.streak = 0
        self.exits = [t for t in self.exits if now - t < p.loop_window_s] + [now]
        if len(self.exits) >= p.loop_exits:
            return None
        delay = min(p.max_s, p.initial_s * 2 ** self.streak)
        self.streak += 1
        return delay
