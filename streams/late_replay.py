"""How a late update changes one fence: membership derived again, in order, from it. Pure.

The history records, after each kept update, the fences the entity was a member of. A late
update that flips a fence's state is followed through the later kept updates until in-order
membership agrees with the recorded one again. Both sides alternate from the same state, so
they differ only in how many transitions they make:
- as many: the recorded transitions stand (one of them happened earlier than recorded: its
  time stands, an emitted event cannot be taken back);
- two more: an excursion the recorded updates did not show, emitted as a pair;
- one more, never agreeing again (every later update lay in the fence's hysteresis band): one
  transition, and membership changes.
The extra events can only be appended if the entity is still in the state the late update
found it in; otherwise (or for any other difference, which only edited fences can cause) the
update is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from streams.entity_history import History
from streams.fence_index import Zone

ENTER, EXIT = "ENTER", "EXIT"
BEHIND = "behind"  # the entity has since changed state in the fence
CHANGED = "changed"  # the fence changed since the later updates were evaluated


@dataclass(slots=True)
class Replay:
    geofence_id: str
    first: str  # the late update's own transition
    back: str  # the one that undoes it
    flips: list[int] = field(default_factory=list)  # kept points whose recorded state flips
    events: list[tuple[str, int | None]] = field(default_factory=list)  # (type, point; None: the late one)
    member: bool | None = None  # the fence's new membership, when it changes
    refused: str | None = None  # BEHIND | CHANGED


def replay(history: History, gid: str, was_in: bool, i: int,
           zones_at: Callable[[int], dict[str, Zone]], member_now: bool) -> Replay:
    """Fence `gid`, whose state the late update placed before kept point `i` flipped."""
    new, old_before = not was_in, was_in
    new_changes, old_changes, agree_at = 1, 0, None
    first, back = (EXIT, ENTER) if was_in else (ENTER, EXIT)
    r = Replay(gid, first, back)
    for j in range(i, len(history)):
        old = gid in history.inside[j]
        old_changes += old != old_before
        old_before = old
        zone = zones_at(j).get(gid, Zone.OUTSIDE)
        step = zone != Zone.OUTSIDE if new else zone == Zone.INSIDE
        new_changes += step != new
        new = step
        if new == old:
            agree_at = j
            break
        r.flips.append(j)
    extra = new_changes - old_changes
    still = member_now == was_in
    if extra == 0:
        pass
    elif extra == 2 and agree_at is not None and still:
        r.events = [(first, None), (back, agree_at)]
    elif extra == 1 and agree_at is None and still:
        r.events, r.member = [(first, None)], not was_in
    else:
        r.refused = CHANGED if still else BEHIND
    return r
