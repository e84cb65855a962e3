"""Choosing how to serve a METRIC request from memory (seed 003 §5.2): the exact grain's slices,
or the cheapest finer memoized grain that covers the window and rolls up to the target — with,
for every other memoized grain, the exact reason it was not used (for explain)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.lifecycle.stability import SliceState, slice_state
from metric_platform.engine.serving.buckets import bucket_end, buckets, is_aligned
from metric_platform.engine.serving.dimension_maps import map_schema
from metric_platform.engine.serving.grains import GrainPlanner
from metric_platform.engine.serving.rollup import Derivation, map_edges, plan_rollup
from metric_platform.engine.serving.types import Rejection
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.engine.store.records import Entry
from metric_platform.semantics.spec import AnalyticalContext, Grain, MetricFamily


@dataclass(frozen=True)
class Option:
    """A memoized grain able to serve the request, with the slices it would read."""

    anchor: Grain
    slices: tuple[Entry, ...]
    derivations: tuple[Derivation, ...] | None  # None: exact

    @property
    def rows(self) -> int:
        return sum(e.row_count for e in self.slices)


class SliceChooser:
    def __init__(
        self,
        ac: AnalyticalContext,
        store: EntryStore,
        grains: GrainPlanner,
        cutoff: Callable[[], dt.date | None],
    ) -> None:
        self.ac = ac
        self.store = store
        self.grains = grains
        self.cutoff = cutoff  # the current stability cutoff (seed 003 §11.3: checked at serve time)

    def base(self, family: MetricFamily, grain: Grain) -> EntryKey:
        return EntryKey(self.ac.name, Domain.METRIC, family.name, grain)

    def valid_slices(
        self,
        family: MetricFamily,
        grain: Grain,
        window: DateWindow,
        source: str | None,
        *,
        stable_only: bool = False,
    ) -> dict[dt.date, Entry]:
        """The window's usable slices at ``grain`` of this definition, read from ``source`` (None:
        any). A stale slice (its bucket crossed the stability cutoff after it was computed) is never
        usable; ``stable_only`` also leaves out provisional ones (a refresh recomputes them)."""
        tg = self.grains.time_grain(grain)
        assert tg is not None
        found = self.store.list_slices(
            self.base(family, grain), start=tg.bucket_start(window.start), end=window.end
        )
        current = self.cutoff()
        usable = (SliceState.STABLE,) if stable_only else (SliceState.STABLE, SliceState.PROVISIONAL)
        return {
            day: e
            for e in found
            if (day := e.key.slice_day) is not None
            and e.meta.family_fingerprint == family.fingerprint
            and e.meta.mvt == family.mvt.kind.value
            and (source is None or e.meta.source_fingerprint == source)
            and slice_state(bucket_end(tg, day), e.meta.stability_cutoff, current) in usable
        }

    def choose(
        self,
        family: MetricFamily,
        target: Grain,
        window: DateWindow,
        source: str | None,
        *,
        thorough: bool = True,
        stable_only: bool = False,
        trusted: frozenset[Grain] = frozenset(),
    ) -> tuple[Option | None, tuple[Rejection, ...]]:
        """The option to serve from (None: the backend), and why each other grain was not used.
        Not ``thorough``: a complete exact match is returned at once, without listing the other
        grains (one manifest query on the hot path; the rejections are then left out).
        ``stable_only`` leaves out provisional slices, except at the ``trusted`` grains (slices kept
        fresh by their own refreshes: a family's Dagster partitions)."""
        base_stable_only = stable_only

        def stable_only_at(grain: Grain) -> bool:
            return base_stable_only and grain not in trusted

        if not thorough:
            direct = self._consider(
                family, target, target, window, source, stable_only=stable_only_at(target)
            )
            if isinstance(direct, Option):
                return direct, ()
        summaries = self.store.list_grains(self.ac.name, Domain.METRIC, family.name)
        if not thorough:
            # The hot path: try finer grains from the fewest estimated rows in the window (rows per
            # slice x buckets in the window) and take the first that covers it, instead of listing
            # every grain's slices to compare them.
            def estimate(grain: Grain) -> tuple[float, Grain]:
                summary, time_grain = summaries[grain], self.grains.time_grain(grain)
                per_slice = summary.total_rows / max(summary.slice_count, 1)
                return (per_slice * (len(buckets(time_grain, window)) if time_grain else 1), grain)

            for grain in sorted(set(summaries) - {target}, key=estimate):
                found = self._consider(
                    family, grain, target, window, source, stable_only=stable_only_at(grain)
                )
                if isinstance(found, Option):
                    return found, ()
            return None, ()
        rejections: list[Rejection] = []
        options: list[Option] = []
        memoized = set(summaries)
        grains = memoized | {target}
        for grain in sorted(grains, key=lambda g: (g != target, len(g), g)):
            option_or_reason = self._consider(
                family, grain, target, window, source, stable_only=stable_only_at(grain)
            )
            if isinstance(option_or_reason, str):
                if grain in memoized or option_or_reason.startswith("the window"):
                    rejections.append(Rejection(grain, option_or_reason))
            else:
                options.append(option_or_reason)
        exact = [o for o in options if o.derivations is None]
        if exact:
            return exact[0], tuple(rejections)
        if options:
            best = min(options, key=lambda o: (o.rows, len(o.anchor)))
            rejections += [
                Rejection(o.anchor, f"covers the window but costs {o.rows} rows (chose {best.rows})")
                for o in options
                if o is not best
            ]
            return best, tuple(rejections)
        return None, tuple(rejections)

    def _consider(
        self,
        family: MetricFamily,
        grain: Grain,
        target: Grain,
        window: DateWindow,
        source: str | None,
        *,
        stable_only: bool,
    ) -> Option | str:
        tg = self.grains.time_grain(grain)
        if tg is None:
            return "no time slices at this grain (results without a time dimension are not memoized)"
        derivations: tuple[Derivation, ...] | None = None
        if grain != target:
            if not family.operator.partition_invariant:
                return f"{family.operator} is not partition-invariant: its entries serve only their own grain"
            derivations = plan_rollup(self.ac, grain, target)
            if derivations is None:
                missing = self.ac.fd_dag.unreachable(grain, target)
                return f"not finer: nothing in ({', '.join(grain)}) determines {', '.join(missing)}"
            for edge in map_edges(derivations):
                if map_schema(self.ac, edge) is None:
                    return f"FD edge {edge.finer}->{edge.coarser} has no schema binding both to roll along"
        if not is_aligned(tg, window):
            return f"the window {window.start}..{window.end} is not made of whole {tg.value}s"
        needed = buckets(tg, window)
        slices = self.valid_slices(family, grain, window, source, stable_only=stable_only)
        present = [slices[b.start] for b in needed if b.start in slices]
        if len(present) < len(needed):
            note = " with stable slices (a refresh recomputes provisional ones)" if stable_only else ""
            return f"covers {len(present)} of {len(needed)} {tg.value}s of the window{note}"
        return Option(grain, tuple(present), derivations)
