"""How a late update changes one fence, pinned where mutation testing found nothing holding it:
every field of the replay (the refusal's wording names `first` and `back`), and that an
entity no longer in the state the late update found it in is refused, not given the events."""

from streams.fence_index import Zone
from streams.late_replay import BEHIND, Replay, replay


class _History:
    """What `replay` reads of an entity's history: its length and, per kept point, the fences
    the entity was recorded inside."""

    def __init__(self, inside):
        self.inside = [set(s) for s in inside]

    def __len__(self):
        return len(self.inside)


def test_a_late_enter_never_undone_flips_membership_when_the_entity_is_still_outside():
    # outside before the late update; the later kept point lay in the band: inside from then on
    r = replay(_History([()]), "g", False, 0, lambda j: {"g": Zone.BAND}, member_now=False)
    assert r == Replay("g", "ENTER", "EXIT", flips=[0], events=[("ENTER", None)], member=True)


def test_the_same_late_enter_is_refused_when_the_entity_has_since_entered():
    r = replay(_History([()]), "g", False, 0, lambda j: {"g": Zone.BAND}, member_now=True)
    assert r == Replay("g", "ENTER", "EXIT", flips=[0], refused=BEHIND)


def test_an_excursion_the_recorded_updates_did_not_show_is_a_pair_of_events():
    # inside before; the late update was outside; the recorded points stayed inside, and in
    # order the entity re-enters at point 1
    zones = {0: {"g": Zone.BAND}, 1: {"g": Zone.INSIDE}}
    r = replay(_History([("g",), ("g",)]), "g", True, 0, lambda j: zones[j], member_now=True)
    assert r == Replay("g", "EXIT", "ENTER", flips=[0], events=[("EXIT", None), ("ENTER", 1)])


def test_recorded_changes_are_counted_over_every_later_point():
    # inside before; the late update was outside. Recorded: out at 0, in at 1. In order: in at 0
    # (inside), out at 1 (outside): both sides change at each point and never agree, one apart
    zones = {0: {"g": Zone.INSIDE}, 1: {}}
    r = replay(_History([(), ("g",)]), "g", True, 0, lambda j: zones[j], member_now=True)
    assert r == Replay("g", "EXIT", "ENTER", flips=[0, 1], events=[("EXIT", None)], member=False)
