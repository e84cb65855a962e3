"""The lifecycle operations of one AC's engine: stale listing, refresh, budget, recommendations.

``stale`` is read-only and one manifest query (the provisional rows whose bucket has since crossed
the cutoff, served by an index), so a sensor may call it every minute. ``refresh`` recomputes what it
lists through the ordinary serve path, replacing the stale slices in place: a crash between the
listing and the recompute loses nothing, the slices stay stale (never served) and are listed again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

from metric_platform.backends.protocol import DataAPIBackend, DateWindow
from metric_platform.engine.lifecycle.eviction_policy import EvictionPolicy, Scored
from metric_platform.engine.lifecycle.late_updates import LateDay, check_late_updates
from metric_platform.engine.lifecycle.recommendations import recommend
from metric_platform.engine.lifecycle.types import (
    EngineLimits,
    EvictedUnit,
    EvictionReport,
    Recommendation,
    RefreshReport,
    StaleSlices,
)
from metric_platform.engine.serving.buckets import bucket_end
from metric_platform.engine.serving.memo import OVERSIZED_PREFIX
from metric_platform.engine.serving.types import Served
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.engine.store.records import ByteTotals, Entry, EvictionUnit
from metric_platform.semantics.spec import AnalyticalContext, Grain
from metric_platform.semantics.types import TimeGrain

log = logging.getLogger(__name__)

# Request counts are kept this many promotion windows (at least 30 days), then pruned.
_REQUEST_RETENTION_WINDOWS = 4


class _Serve(Protocol):
    def __call__(
        self,
        family: str,
        anchor: Grain,
        *,
        backend: DataAPIBackend,
        window: DateWindow | None = None,
        pin: bool = False,
        recompute: bool = False,
        refresh: bool = False,
    ) -> Served: ...


class Lifecycle:
    def __init__(
        self,
        ac: AnalyticalContext,
        store: EntryStore,
        limits: EngineLimits,
        *,
        cutoff: Callable[[], dt.date | None],
        serve: _Serve,
    ) -> None:
        self.ac = ac
        self.store = store
        self.limits = limits
        self._cutoff = cutoff
        self._serve = serve

    # -- stability -----------------------------------------------------------------------------
    def stale(self) -> list[StaleSlices]:
        """The (family, grain, bucket) slices whose bucket crossed the cutoff after they were
        computed; read-only. Slices of a family no longer defined this way are not listed (no
        request will read them; eviction takes them)."""
        # Without a stability block every bucket is final: every provisional slice is stale.
        return self._group(self.store.list_provisional(self.ac.name, ended_by=self._cutoff()))

    def provisional(self) -> list[StaleSlices]:
        """Every slice computed inside its hold-off window (stale ones included)."""
        return self._group(self.store.list_provisional(self.ac.name))

    def refresh(
        self,
        *,
        backend: DataAPIBackend,
        dry_run: bool = False,
        provisional: bool = False,
        late_updates: bool = False,
    ) -> RefreshReport:
        """Recompute the stale slices (``provisional``: every provisional one), finest grains first
        so that coarser cache-hint grains roll up from fresh days without a backend call.
        ``late_updates``: also scan the update timestamps and recompute every memoized slice whose
        bucket holds a day updated after it had become stable."""
        groups = sorted(self.provisional() if provisional else self.stale(), key=self._finest_first)
        late_found = self.late_updates(backend=backend) if late_updates else []
        late = sorted(self._holding(late_found), key=self._finest_first)
        cutoff = self._cutoff()
        if dry_run:
            return RefreshReport(cutoff, True, tuple(groups), 0, 0, tuple(late_found), tuple(late))
        calls = 0
        for group in groups:
            for window in self._windows(group):
                served = self._serve(
                    group.family, group.anchor, backend=backend, window=window, pin=group.pinned, refresh=True
                )
                calls += len(served.provenance.path.backend_ranges)
        for group in late:
            for window in self._windows(group):
                served = self._serve(
                    group.family,
                    group.anchor,
                    backend=backend,
                    window=window,
                    pin=group.pinned,
                    recompute=True,
                )
                calls += len(served.provenance.path.backend_ranges)
        self._invalidate_leftovers(groups)
        self._prune_requests()
        recomputed = sum(len(group.days) for group in (*groups, *late))
        log.info("refreshed %d slice(s) of AC %r under cutoff %s", recomputed, self.ac.name, cutoff)
        return RefreshReport(cutoff, False, tuple(groups), recomputed, calls, tuple(late_found), tuple(late))

    def late_updates(self, *, backend: DataAPIBackend, window: DateWindow | None = None) -> list[LateDay]:
        """Days up to the cutoff with rows updated after the day had become stable (a scan of the
        update-timestamp column); empty for an AC without a stability block."""
        current = self._cutoff()
        if current is None:
            return []
        return check_late_updates(self.ac, backend, until=current, window=window)

    def _holding(self, late: Sequence[LateDay]) -> list[StaleSlices]:
        """The memoized slices (of the current definitions) whose bucket holds a late day and that
        were computed before that day's last update: one computed after it already holds the
        update, so a second refresh recomputes nothing."""
        if not late:
            return []
        days = [d.day for d in late]
        found: list[Entry] = []
        for family in self.ac.families.values():
            for anchor, summary in self.store.list_grains(self.ac.name, Domain.METRIC, family.name).items():
                tg = self._time_grain(anchor)
                if tg is None or not summary.slice_count:
                    continue
                starts = {tg.bucket_start(day) for day in days}
                base = EntryKey(self.ac.name, Domain.METRIC, family.name, anchor)
                listed = self.store.list_slices(base, start=min(starts), end=max(starts))
                updated: dict[dt.date, dt.datetime] = {}
                for d in late:
                    start = tg.bucket_start(d.day)
                    updated[start] = max(updated.get(start, _utc(d.last_update)), _utc(d.last_update))
                found += [
                    e
                    for e in listed
                    if (day := e.key.slice_day) in updated and e.materialized_at < updated[day]
                ]
        return self._group(found)

    def _group(self, entries: Sequence[Entry]) -> list[StaleSlices]:
        days: dict[tuple[str, Grain], list[dt.date]] = defaultdict(list)
        pinned: dict[tuple[str, Grain], bool] = defaultdict(bool)
        for entry in entries:
            family = self.ac.families.get(entry.key.dataset_id)
            day = entry.key.slice_day
            if (
                entry.key.domain is not Domain.METRIC
                or family is None
                or day is None
                or entry.meta.family_fingerprint != family.fingerprint
                or entry.meta.mvt != family.mvt.kind.value
            ):
                continue
            group = (family.name, entry.key.anchor)
            days[group].append(day)
            pinned[group] = pinned[group] or entry.pinned
        return [
            StaleSlices(family, anchor, tuple(sorted(found)), pinned[(family, anchor)])
            for (family, anchor), found in sorted(days.items())
        ]

    def _finest_first(self, group: StaleSlices) -> tuple[int, int, str, Grain]:
        order = list(TimeGrain)
        tg = self._time_grain(group.anchor)
        return (order.index(tg) if tg else len(order), -len(group.anchor), group.family, group.anchor)

    def _time_grain(self, anchor: Grain) -> TimeGrain | None:
        return next((tg for d in anchor if (tg := self.ac.dimension(d).time_grain) is not None), None)

    def _windows(self, group: StaleSlices) -> list[DateWindow]:
        """Runs of consecutive buckets, one window (one backend call at most) each."""
        tg = self._time_grain(group.anchor)
        assert tg is not None  # only time slices are memoized
        windows: list[DateWindow] = []
        for start in group.days:
            end = bucket_end(tg, start)
            if windows and (start - windows[-1].end).days == 1:
                windows[-1] = DateWindow(windows[-1].start, end)
            else:
                windows.append(DateWindow(start, end))
        return windows

    def _invalidate_leftovers(self, groups: Sequence[StaleSlices]) -> None:
        """A stale slice the recompute did not replace (its grain is no longer a cache_hint grain,
        so the policy no longer memoizes it) is removed: invalidate-only (seed 003 §11.2)."""
        wanted = {(g.family, g.anchor) for g in groups}
        for entry in self.store.list_provisional(self.ac.name, ended_by=self._cutoff()):
            if (entry.key.dataset_id, entry.key.anchor) in wanted and not entry.pinned:
                # Only the version listed: a replacement another process just published stays.
                self.store.delete(entry.key, if_version=entry.version)

    def _prune_requests(self) -> None:
        keep = max(30, self.limits.promotion_window_days * _REQUEST_RETENTION_WINDOWS)
        self.store.prune_requests(self.ac.name, before=self.store.now().date() - dt.timedelta(days=keep))

    # -- budget --------------------------------------------------------------------------------
    def enforce_budget(self, *, to_bytes: int | None = None, dry_run: bool = False) -> EvictionReport:
        """Evict until the AC's evictable bytes are within the budget (or ``to_bytes``)."""
        budget = self.limits.max_bytes_per_ac
        target = budget if to_bytes is None else to_bytes
        totals = self.store.byte_totals(self.ac.name)
        over_pinned = totals.pinned > budget
        if over_pinned:
            log.warning(
                "AC %r: pinned entries alone hold %d bytes, over the %d-byte budget; they back "
                "materialized partitions and are never evicted: raise max_bytes_per_ac or unpin",
                self.ac.name,
                totals.pinned,
                budget,
            )
        if totals.evictable <= target:
            return EvictionReport(
                self.limits.eviction_policy,
                target,
                totals.evictable,
                totals.evictable,
                totals.pinned,
                (),
                over_pinned,
                dry_run,
            )
        policy = self._policy()
        now = self.store.now()
        chosen: list[Scored] = []
        seen: list[ByteTotals] = []

        def choose(current: ByteTotals, units: list[EvictionUnit]) -> list[EvictionUnit]:
            seen.append(current)
            chosen[:] = policy.choose(current, units, target=target, now=now)
            return [s.unit for s in chosen]

        _, result = self.store.evict(self.ac.name, choose, dry_run=dry_run)
        before = seen[-1] if seen else totals
        freed = sum(s.unit.byte_size for s in chosen) if dry_run else result.bytes_freed
        evicted = tuple(
            EvictedUnit(
                s.unit.domain.value,
                s.unit.dataset_id,
                s.unit.anchor,
                len(s.unit.rows),
                s.unit.byte_size,
                s.score,
            )
            for s in chosen
        )
        report = EvictionReport(
            self.limits.eviction_policy,
            target,
            before.evictable,
            before.evictable - freed,
            before.pinned,
            evicted,
            over_pinned,
            dry_run,
            0 if dry_run else result.rows_skipped,
        )
        log.info(
            "AC %r: %s %d unit(s), %d bytes (evictable %d -> %d, target %d)",
            self.ac.name,
            "would evict" if dry_run else "evicted",
            len(evicted),
            freed,
            report.evictable_before,
            report.evictable_after,
            target,
        )
        return report

    def _policy(self) -> EvictionPolicy:
        memoized: dict[str, dict[Grain, float]] = {}
        for name in self.ac.families:
            summaries = self.store.list_grains(self.ac.name, Domain.METRIC, name)
            memoized[name] = {
                grain: s.total_rows / s.slice_count for grain, s in summaries.items() if s.slice_count
            }
        requested: dict[str, list[Grain]] = defaultdict(list)
        for counted in self.store.request_counts(
            self.ac.name, since=self._window_start(), domain=Domain.METRIC
        ):
            requested[counted.dataset_id].append(counted.anchor)
        return EvictionPolicy(
            self.ac, kind=self.limits.eviction_policy, memoized=memoized, requested=requested
        )

    def _window_start(self) -> dt.date:
        return self.store.now().date() - dt.timedelta(days=self.limits.promotion_window_days - 1)

    # -- recommendations -------------------------------------------------------------------------
    def recommend(self) -> list[Recommendation]:
        requests = self.store.request_counts(self.ac.name, since=self._window_start(), domain=Domain.METRIC)
        oversized = [
            json.loads(v) for v in self.store.list_meta(self.ac.name, prefix=OVERSIZED_PREFIX).values()
        ]
        return recommend(self.ac, requests, oversized, self.limits)


def _utc(moment: dt.datetime) -> dt.datetime:
    """Source timestamps without a zone are read as UTC (as the backends bucket days in UTC)."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
