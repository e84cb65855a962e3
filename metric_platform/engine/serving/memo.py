"""What a METRIC serve keeps (seed 003 §9, §15.7): the full buckets of a result, as slices, unless a
policy rule says no; results over the per-entry cap are served, not kept, and recorded for
``metric-platform recommend``."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

import polars as pl

from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.serving.buckets import Bucket, buckets
from metric_platform.engine.serving.chooser import SliceChooser
from metric_platform.engine.serving.entry_meta import metric_meta
from metric_platform.engine.serving.grains import GrainPlanner
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.semantics.spec import AnalyticalContext, Grain, MetricFamily
from metric_platform.semantics.types import TimeGrain

log = logging.getLogger(__name__)

OVERSIZED_PREFIX = "oversized:"  # engine_meta keys of results over the entry cap (seed §15.7)


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
    ) -> bool:
        """Keep the full buckets of ``frame`` as slices, unless a policy rule says no (seed §9.4,
        §15.7); pinned results (behind a Dagster partition) are always kept."""
        if not full:
            return False
        time_dim = self.grains.time_dims(grain)[0][0]
        starts = [b.start for b in full]
        rows = frame.filter(pl.col(time_dim).is_in(starts))
        if not pin:
            if rows.height == 1 and len(starts) == 1:
                return False  # a singleton lookup (one cell) is not worth an entry; empty days are
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
                return False
        meta = metric_meta(self.ac, family, grain, family.mvt, cutoff=self.cutoff(), pinned=pin)
        meta = replace(meta, source_fingerprint=source)
        self.store.publish_slices(
            self.chooser.base(family, grain),
            rows,
            slice_column=time_dim,
            slices=starts,
            meta=meta,
            ends={b.start: b.end for b in full},
        )
        return True

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
