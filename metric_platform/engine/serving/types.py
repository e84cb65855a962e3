"""What a METRIC serve decided and where its answer came from (seed 003 §5.1, §12.3)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

import polars as pl

from metric_platform.backends.protocol import DateWindow
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.spec import Grain


class PathKind(StrEnum):
    EXACT = "exact"  # memoized entries at the requested grain
    ROLLUP = "rollup"  # memoized entries at a finer grain, rolled up along the FD-DAG
    BACKEND = "backend"  # one backend aggregate (memoized where the policy allows)
    EMPTY = "empty"  # nothing to serve: under provisional: exclude, no day of the window is stable yet


@dataclass(frozen=True)
class FDStep:
    """One FD-DAG edge a rollup traverses; ``via`` says how: calendar truncation or a dimension map."""

    finer: str
    coarser: str
    via: str


@dataclass(frozen=True)
class ServingPath:
    kind: PathKind
    family: str
    operator: Operator
    target_anchor: Grain
    source_anchor: Grain  # the grain read from memory or fetched from the backend
    rollup_steps: tuple[FDStep, ...] = ()
    window: DateWindow | None = None
    slices_read: int = 0
    source_rows: int = 0
    backend_ranges: tuple[DateWindow, ...] = ()  # what the backend computed (one call per range)

    def describe(self) -> str:
        grain = ", ".join(self.source_anchor) or "()"
        match self.kind:
            case PathKind.EXACT:
                text = f"exact: {self.slices_read} memoized slice(s) at ({grain}), {self.source_rows} rows"
            case PathKind.ROLLUP:
                steps = (
                    ", ".join(f"{s.finer}->{s.coarser} ({s.via})" for s in self.rollup_steps) or "aggregate"
                )
                text = (
                    f"rollup from ({grain}): {self.slices_read} memoized slice(s), {self.source_rows} rows; "
                    f"steps {steps}"
                )
            case PathKind.BACKEND:
                text = f"backend at ({grain})"
            case PathKind.EMPTY:
                text = "empty: no day of the window is stable yet (the AC serves stable days only)"
        if self.backend_ranges:
            ranges = ", ".join(f"{r.start}..{r.end}" for r in self.backend_ranges)
            text += f"; backend computed {ranges}"
        return text


@dataclass(frozen=True)
class Rejection:
    """A memoized grain the chooser did not use, and exactly why."""

    anchor: Grain
    reason: str


@dataclass(frozen=True)
class Provenance:
    """Where a served column came from (seed 003 §12.3)."""

    family: str
    path: ServingPath
    backend: str
    verification_level: str
    materialized_from: dt.datetime | None = None  # oldest entry read (None: computed now)
    materialized_to: dt.datetime | None = None
    stability_cutoffs: tuple[dt.date, ...] = ()
    partial_buckets: tuple[dt.date, ...] = ()  # coarse buckets only partly inside the window
    memoized: bool = False
    not_further_rollable: bool = False  # non-partition-invariant operators (seed §12.2)
    # Seed 003 §11: the cutoff in force when served, and the served buckets (bucket starts; for a
    # grain without time, the window's first day) not yet stable under it: their rows may change.
    stability_cutoff: dt.date | None = None
    provisional_buckets: tuple[dt.date, ...] = ()
    excluded_after: dt.date | None = None  # provisional: exclude clipped the window after this day

    @property
    def provisional(self) -> bool:
        return bool(self.provisional_buckets)


@dataclass(frozen=True)
class Served:
    """A serve's answer: the single-column-with-anchor frame, and how it was obtained."""

    frame: pl.LazyFrame
    provenance: Provenance
    rejections: tuple[Rejection, ...] = field(default=())
