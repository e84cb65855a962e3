"""What a METRIC serve keeps (seed 003 §9, §15.7): the full buckets of a result, as slices, unless a
policy rule says no; results over the per-entry cap are served, not kept, and recorded for
``metric-platform recommend``."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from enum import StrEnum

import polars as pl

from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.serving.buckets import Bucket, buckets
from metric_platform.engine.serving.chooser import SliceChooser
from metric_platform.engine.serving.entry_meta import metric_meta
from metric_platform.engine.serving.grains import GrainPlanner
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.records import Entry
from metric_platform.semantics.spec import AnalyticalContext, Grain, MetricFamily
from metric_platform.semantics.types import TimeGrain

log = logging.getLogger(__name__)

OVERSIZED_PREFIX = "oversized:"  # engine_meta keys of results over the entry cap (seed §15.7)


class Memo(StrEnum):
    """What ``Memoizer.memoize`` did with a result."""

    KEPT = "kept"
    SKIPPED = "skipped"  # nothing to keep, a singleton lookup (seed §9.4), or a dry run
    OVER_CAP = "over_cap"  # over the per-entry cap (seed §15.7): served, recommended coarser


class Memoizer:
    def __init__(
        self,
        ac: AnalyticalContext,
        store: EntryStore,
        chooser: SliceChooser,
        grains: GrainPlanner,
        *,
        entry_byte_cap: int,
        cutoff: Callable[[], dt.date | None],
        today: Callable[[], dt.date],
    ) -> None:
        self.ac = ac
        self.store = store
        self.chooser = chooser
        self.grains = grains
        self.entry_byte_cap = entry_byte_cap
        self.cutoff = cutoff
        self.today = today
        self.recommendations: list[str] = []

    def to_keep(
        self,
        family: MetricFamily,
        target: Grain,
        grain: TimeGrain,
        window: DateWindow,
        source: str,
        *,
        pin: bool,
        recompute: bool = False,
        refresh: bool = False,
    ) -> list[Bucket]:
        """The whole buckets of the window to memoize at ``target``: those not memoized already
        (a pin or a recompute republishes them all, so they end up pinned / fresh; a refresh
        republishes the provisional ones)."""
        full = [b for b in buckets(grain, window) if b.full]
        if pin or recompute:
            return full
        have = self.chooser.valid_slices(family, target, window, source, stable_only=refresh)
        return [b for b in full if b.start not in have]

    def memoize(
        self,
        family: MetricFamily,
        grain: Grain,
        frame: pl.DataFrame,
        full: Sequence[Bucket],
        source: str,
        *,
        pin: bool,
    ) -> Memo:
        """Keep the full buckets of ``frame`` as slices, unless a policy rule says no (seed §9.4,
        §15.7); pinned results (behind a Dagster partition) are always kept."""
        if not full:
            return Memo.SKIPPED
        time_dim = self.grains.time_dims(grain)[0][0]
        starts = [b.start for b in full]
        rows = frame.filter(pl.col(time_dim).is_in(starts))
        if not pin:
            if rows.height == 1 and len(starts) == 1:
                return Memo.SKIPPED  # a singleton lookup (one cell) is not worth an entry; empty days are
            size = rows.estimated_size()
            if size > self.entry_byte_cap:
                coarser = ", ".join(grain)
                note = (
                    f"{family.name} at ({coarser}) over {len(starts)} bucket(s) is {size} bytes, over the "
                    f"{self.entry_byte_cap}-byte entry cap: served but not memoized; a coarser grain would be"
                )
                log.info(note)
                self.recommendations.append(note)
                self._remember_oversized(family, grain, int(size), len(starts))
                return Memo.OVER_CAP
        meta = metric_meta(self.ac, family, grain, family.mvt, cutoff=self.cutoff(), pinned=pin)
        meta = replace(meta, source_fingerprint=source)
        kept = self.store.publish_slices(
            self.chooser.base(family, grain),
            rows,
            slice_column=time_dim,
            slices=starts,
            meta=meta,
            ends={b.start: b.end for b in full},
        )
        # Nothing stored (a dry run suppresses the publish): the provenance must not say memoized.
        return Memo.KEPT if kept else Memo.SKIPPED

    def keep_target(
        self,
        family: MetricFamily,
        target: Grain,
        window: DateWindow,
        rolled: pl.DataFrame,
        at_target: dict[dt.date, Entry],
        *,
        source: str,
        pin: bool,
        recompute: bool,
        refresh: bool,
    ) -> bool:
        """Memoize the rolled-up target's full buckets (those not already kept at the target)."""
        target_grain = self.grains.time_grain(target)
        if target_grain is None:
            return False
        full = self.to_keep(
            family, target, target_grain, window, source, pin=pin, recompute=recompute, refresh=refresh
        )
        # Buckets read from the target's own slices are not in ``rolled``: never republish them
        # (they would become empty slices).
        full = [b for b in full if b.start not in at_target]
        return self.memoize(family, target, rolled, full, source, pin=pin) is Memo.KEPT

    def memoized_at_target(
        self,
        family: MetricFamily,
        target: Grain,
        fetch: Grain,
        window: DateWindow,
        source: str,
        *,
        stable_only: bool,
    ) -> dict[dt.date, Entry]:
        """The whole target buckets memoized at the target grain itself (a cache_hint grain whose
        native slices were evicted or over the cap): read, not fetched again at the native grain."""
        target_grain = self.grains.time_grain(target)
        if fetch == target or target_grain is None:
            return {}
        have = self.chooser.valid_slices(family, target, window, source, stable_only=stable_only)
        return {b.start: have[b.start] for b in buckets(target_grain, window) if b.full and b.start in have}

    def outside(
        self, native: tuple[Bucket, ...], target: Grain, at_target: dict[dt.date, Entry]
    ) -> tuple[Bucket, ...]:
        """The native buckets not inside one of the target buckets ``at_target``."""
        target_grain = self.grains.time_grain(target)
        if not at_target or target_grain is None:
            return native
        return tuple(b for b in native if target_grain.bucket_start(b.start) not in at_target)

    def _remember_oversized(self, family: MetricFamily, grain: Grain, size: int, count: int) -> None:
        """Recorded in the manifest, so ``metric-platform recommend`` (another process) lists it."""
        key = f"{OVERSIZED_PREFIX}{family.name}:{','.join(grain)}"
        seen = json.loads(self.store.get_meta(self.ac.name, key) or "{}")
        record = {
            "family": family.name,
            "anchor": list(grain),
            "bytes": max(size, int(seen.get("bytes", 0))),
            "buckets": count,
            "cap": self.entry_byte_cap,
            "times": int(seen.get("times", 0)) + 1,
            "last_seen": self.today().isoformat(),
        }
        self.store.set_meta(self.ac.name, key, json.dumps(record, sort_keys=True))
