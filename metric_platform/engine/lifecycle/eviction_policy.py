"""Which entries to evict when an AC's store is over its byte budget (seed 003 §10), pure.

Under the plain ``lru`` policy every unit scores its age (§10.1). Under ``fd_dag`` METRIC entries
are scored FD-DAG-aware (§10.2)::

    score = (now - last_access_at) / (downstream_fanout * (1 + ln(1 + access_count)))

and the highest score goes first. ``downstream_fanout`` is 1 (the grain's own exact path) plus the
number of coarser nodes whose cheapest serving path is this grain: a (store, day) entry that is the
cheapest source of (region, day), (region, month) and (store, month) is worth more than its own
hit count says, since evicting it sends all of them to the backend. The nodes are the family's
cache_hint grains, the grains requested within the promotion window and the memoized grains; a
node memoized itself is served exactly and depends on nothing. The seed writes ``log access_count``,
which is 0 for an entry used once; ``1 + ln(1 + n)`` keeps its order and is never 0. A unit's
``access_count`` is its hottest slice's (a serve reading a range stamps every slice of it once).

QM profiles have no FD-DAG position: under ``fd_dag`` their age is divided by the same access
factor (fanout 1), so that both domains are ranked on one scale. A dimension map (``fd_map``) has
one: its fanout is 1 plus the nodes whose cheapest rollup goes along its edge. Scored by bare age
beside METRIC scores divided by fanout and use (and with their reads not recorded), the maps were
evicted first and rebuilt from the source twice as often as under plain LRU (measured with
``test_bench_eviction.py``).

The unit of eviction is the set of a grain's unpinned slices that share one file (one computed
range): removing it frees the file, where evicting single rows would free only accounting bytes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from metric_platform.engine.lifecycle.types import EvictionPolicyKind
from metric_platform.engine.serving.dimension_maps import DATASET as MAPS_DATASET
from metric_platform.engine.serving.dimension_maps import map_schema
from metric_platform.engine.serving.rollup import map_edges, plan_rollup
from metric_platform.engine.store.keys import Domain
from metric_platform.engine.store.records import ByteTotals, EvictionUnit
from metric_platform.semantics.spec import AnalyticalContext, Grain
from metric_platform.semantics.types import TimeGrain

# Days per bucket, to compare the rows a grain costs per day of a window across time grains.
_BUCKET_DAYS = {
    TimeGrain.DAY: 1.0,
    TimeGrain.WEEK: 7.0,
    TimeGrain.MONTH: 30.44,
    TimeGrain.QUARTER: 91.31,
    TimeGrain.YEAR: 365.25,
}


@dataclass(frozen=True)
class Scored:
    unit: EvictionUnit
    score: float


class EvictionPolicy:
    """Scores eviction units for one AC; ``memoized`` gives each family's memoized grains with
    their rows per slice (pinned ones included: they serve too), ``requested`` the grains asked
    for recently."""

    def __init__(
        self,
        ac: AnalyticalContext,
        *,
        kind: EvictionPolicyKind,
        memoized: Mapping[str, Mapping[Grain, float]],
        requested: Mapping[str, Iterable[Grain]],
    ) -> None:
        self.ac = ac
        self.kind = kind
        self._memoized = memoized
        self._requested = {family: tuple(grains) for family, grains in requested.items()}
        self._fanout = cache(self._compute_fanout)
        self._map_fanout = cache(self._compute_map_fanout)

    def choose(
        self, totals: ByteTotals, units: Sequence[EvictionUnit], *, target: int, now: dt.datetime
    ) -> list[Scored]:
        """The units to evict, highest score first, until the evictable bytes are at most ``target``."""
        excess = totals.evictable - target
        if excess <= 0:
            return []
        ranked = sorted(
            (Scored(unit, self.score(unit, now)) for unit in units),
            key=lambda s: (-s.score, -s.unit.byte_size, s.unit.path),
        )
        chosen: list[Scored] = []
        for scored in ranked:
            if excess <= 0:
                break
            chosen.append(scored)
            excess -= scored.unit.byte_size
        return chosen

    def score(self, unit: EvictionUnit, now: dt.datetime) -> float:
        age = max((now - unit.last_access_at).total_seconds(), 0.0)
        if self.kind is EvictionPolicyKind.LRU:
            return age
        heat = 1.0 + math.log1p(unit.access_count)
        if unit.domain is not Domain.METRIC:
            if unit.dataset_id == MAPS_DATASET and len(unit.anchor) == 2:
                return age / (self._map_fanout(unit.anchor[0], unit.anchor[1]) * heat)
            return age / heat
        if unit.dataset_id not in self.ac.families:
            return math.inf  # a family no longer in the AC: nothing will read it again
        return age / (self._fanout(unit.dataset_id, unit.anchor) * heat)

    def fanout(self, family: str, grain: Grain) -> int:
        return self._fanout(family, grain)

    def _compute_fanout(self, family: str, grain: Grain) -> int:
        memoized = self._memoized.get(family, {})
        spec = self.ac.families[family]
        nodes = {*spec.cache_grains, *self._requested.get(family, ()), *memoized}
        losing = 0
        for node in nodes:
            if node == grain or node in memoized or not self._serves(family, grain, node):
                continue
            sources = [m for m in memoized if self._serves(family, m, node)]
            if sources and min(sources, key=lambda m: (self._cost(memoized, m), len(m), m)) == grain:
                losing += 1
        return 1 + losing

    def map_fanout(self, finer: str, coarser: str) -> int:
        return self._map_fanout(finer, coarser)

    def _compute_map_fanout(self, finer: str, coarser: str) -> int:
        """1 + the (family, node) pairs whose cheapest memoized source rolls up along the edge."""
        along = 0
        for family, spec in self.ac.families.items():
            memoized = self._memoized.get(family, {})
            for node in {*spec.cache_grains, *self._requested.get(family, ())} - set(memoized):
                sources = [m for m in memoized if self._serves(family, m, node)]
                if not sources:
                    continue
                best = min(sources, key=lambda m: (self._cost(memoized, m), len(m), m))
                derivations = plan_rollup(self.ac, best, node)
                edges = map_edges(derivations) if derivations is not None else ()
                along += any((e.finer, e.coarser) == (finer, coarser) for e in edges)
        return 1 + along

    def _serves(self, family: str, source: Grain, target: Grain) -> bool:
        return _serves(self.ac, family, source, target)

    def _cost(self, memoized: Mapping[Grain, float], grain: Grain) -> float:
        time_dims = [tg for d in grain if (tg := self.ac.dimension(d).time_grain) is not None]
        days = _BUCKET_DAYS[time_dims[0]] if time_dims else 1.0
        return memoized[grain] / days


def _serves(ac: AnalyticalContext, family: str, source: Grain, target: Grain) -> bool:
    """Whether memoized slices at ``source`` can serve ``target`` by rollup (as the chooser rules)."""
    if source == target:
        return True
    if not ac.families[family].operator.partition_invariant:
        return False
    if not any(ac.dimension(d).time_grain is not None for d in source):
        return False
    derivations = plan_rollup(ac, source, target)
    return derivations is not None and all(map_schema(ac, e) is not None for e in map_edges(derivations))
