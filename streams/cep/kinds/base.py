"""The shape every CEP kind has, as quix-streams' window aggregations have
`initialize / agg / result`. Pure: a kind sees one key's events, never Kafka.

    parse(body) -> params        the kind's own fields, validated (422 reasons)
    specs(p) -> (spec, starts)   the events it listens to, for the pattern index; `starts`: the
                                 event can start state (others only matter once state exists)
    initialize(p) -> state       empty operator state: plain lists and dicts (JSON, compact)
    feed(p, st, ev, key)         one event, in event-time order for `ordered` kinds -> outputs
    tick(p, st, now, settled, key)  timers: `now` is the stage's input clock, `settled` the
                                 event time below which nothing more can arrive -> outputs
    due(p, st) -> int | None     when tick has work: an event time (settled must reach it) for
                                 timer == "event", a clock time for timer == "clock"
    publish(p, st, key)          what it publishes while open (aggregates' open windows), asked
                                 at most once a second for keys that changed
    result(p, st) -> dict        what the state amounts to now (explains matches; tests)

Outputs are `Match`, `Aggregate`, `AggregateGone`, or `LATE` (the event is older than what the
kind has already settled). Kinds never see ids of other tenants: state is per tenant-scoped key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Iterable

from streams.cep.specs import EventSpec

if TYPE_CHECKING:
    from streams.cep.patterns import Pattern

MAX_PARTIALS = 100  # partial matches (or buffered events) kept per key and pattern


class Kind:
    name: ClassVar[str]
    default_lateness_s: ClassVar[float] = 5
    ordered: ClassVar[bool] = True  # fed through the key's event-time buffer; else at arrival
    timer: ClassVar[str | None] = None  # None | "event" | "clock"
    locations: ClassVar[bool] = False  # also reads geo.locations (entity mode)
    overlaps: ClassVar[bool] = False  # takes `overlap`: skip_past_last | allow
    publishes: ClassVar[bool] = False  # has open results to publish (`publish`)

    def parse(self, body: dict) -> Any:
        raise NotImplementedError

    def keyed_by(self, params: Any) -> str:
        return "entity"

    def specs(self, p: "Pattern") -> Iterable[tuple[EventSpec, bool]]:
        return ()

    def initialize(self, p: "Pattern") -> Any:
        return []

    def feed(self, p: "Pattern", st: Any, ev: dict, key: str) -> list:
        return []

    def on_location(self, p: "Pattern", st: Any, loc: dict, key: str) -> list:
        return []

    def tick(self, p: "Pattern", st: Any, now: int, settled: int, key: str) -> list:
        return []

    def due(self, p: "Pattern", st: Any) -> int | None:
        return None

    def publish(self, p: "Pattern", st: Any, key: str) -> list:
        return []

    def empty(self, st: Any) -> bool:
        return not st

    def result(self, p: "Pattern", st: Any) -> dict:
        return {"state": st}
