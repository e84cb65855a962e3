"""What the lifecycle operations report: stale slices, refreshes, evictions, recommendations."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from metric_platform.engine.lifecycle.late_updates import LateDay
from metric_platform.semantics.spec import Grain


class EvictionPolicyKind(StrEnum):
    FD_DAG = "fd_dag"  # seed 003 §10.2: METRIC scores biased by FD-DAG fanout and use
    LRU = "lru"  # §10.1: least recently used first, every entry


@dataclass(frozen=True)
class EngineLimits:
    """The installation's lifecycle settings for one engine (``Settings`` projected)."""

    max_bytes_per_ac: int
    entry_byte_cap: int
    eviction_policy: EvictionPolicyKind = EvictionPolicyKind.FD_DAG
    promotion_window_days: int = 7
    promotion_min_hits: int = 100
    promotion_min_days: int = 3


@dataclass(frozen=True)
class StaleSlices:
    """The slices of one (family, grain) that need recomputing; ``days`` are bucket starts."""

    family: str
    anchor: Grain
    days: tuple[dt.date, ...]
    pinned: bool  # some of them back a materialized partition: the recompute keeps the pin

    def describe(self) -> str:
        return (
            f"{self.family} at ({', '.join(self.anchor)}): {len(self.days)} slice(s) {day_ranges(self.days)}"
        )


@dataclass(frozen=True)
class RefreshReport:
    cutoff: dt.date | None
    dry_run: bool
    groups: tuple[StaleSlices, ...]
    recomputed: int  # slices recomputed (0 on a dry run)
    backend_calls: int  # backend aggregates the recompute issued
    late_days: tuple[LateDay, ...] = ()  # with late_updates: days updated after they were stable
    late_groups: tuple[StaleSlices, ...] = ()  # ... and the memoized slices recomputed for them


@dataclass(frozen=True)
class EvictedUnit:
    """Unpinned slices of one grain that shared one file, evicted (or, on a dry run, chosen)."""

    domain: str
    dataset_id: str
    anchor: Grain
    slices: int
    bytes: int
    score: float


@dataclass(frozen=True)
class EvictionReport:
    policy: str
    budget: int  # the evictable-byte target of this run
    evictable_before: int
    evictable_after: int
    pinned_bytes: int
    evicted: tuple[EvictedUnit, ...]
    pinned_over_budget: bool  # pinned entries alone exceed the AC's budget: said, never evicted
    dry_run: bool
    rows_skipped: int = 0  # chosen rows another writer replaced or pinned meanwhile (kept)

    @property
    def bytes_evicted(self) -> int:
        return sum(unit.bytes for unit in self.evicted)


RecommendationKind = Literal["cache_hint", "declared_schema", "coarser_grain"]


@dataclass(frozen=True)
class Recommendation:
    """Something the AC author may act on (the engine never edits an AC), with the YAML to paste."""

    kind: RecommendationKind
    family: str
    anchor: Grain
    hits: int
    reason: str
    stanza: str


def day_ranges(days: tuple[dt.date, ...]) -> str:
    """``2026-01-01..2026-01-03, 2026-01-07`` for sorted days (consecutive days merged)."""
    if not days:
        return ""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in days:
        if runs and (day - runs[-1][1]).days == 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)
