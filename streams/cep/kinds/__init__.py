"""The pattern kinds, by name: each one small class (`streams.cep.kinds.base.Kind`). Pure."""

from __future__ import annotations

from streams.cep.kinds.aggregate import AggregateKind
from streams.cep.kinds.base import Kind
from streams.cep.kinds.comovement import Comovement
from streams.cep.kinds.count import Count
from streams.cep.kinds.join import Join
from streams.cep.kinds.outliers import DwellOutlier, RateOutlier
from streams.cep.kinds.presence import TimeOfDay, TrackGap
from streams.cep.kinds.sequence import Absence, Sequence
from streams.cep.kinds.speed import Speed

KINDS: dict[str, Kind] = {k.name: k for k in (
    Sequence(), Absence(), TrackGap(), Count(), TimeOfDay(), Comovement(), AggregateKind(),
    Join(), Speed(), DwellOutlier(), RateOutlier())}

__all__ = ["KINDS", "Kind"]
