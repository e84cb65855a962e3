"""The DataAPIBackend port (seed 003 §7, §13.4): one metric at one anchor, or a table extract.

Backends are thin: the engine calls them only on a miss, with exactly one metric per request.
Every backend returns the same frame for the same request (the cross-backend invariant, seed
§13.3): anchor columns in request order, then one value column named after the family, with the
dtypes of ``backends.normalize`` and SQL's null semantics.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import polars as pl

from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.spec import AnalyticalContext, Grain, MetricFamily
from metric_platform.semantics.types import MissingValueTreatment


@dataclass(frozen=True)
class DateWindow:
    """An inclusive range of event days."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.start > self.end:
            msg = f"time window starts after it ends ({self.start} > {self.end}); swap the dates"
            raise InvalidRequestError(msg)

    @classmethod
    def day(cls, day: dt.date) -> DateWindow:
        return cls(day, day)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class AggregateRequest:
    """Aggregate ``family`` at ``anchor`` over the rows of its root schema (AC filter applied),
    optionally restricted to event days inside ``window``; ``mvt`` overrides the family's;
    ``with_counts`` adds the ``__rows`` and ``__nonnull`` columns (see the module docstring)."""

    family: MetricFamily
    anchor: Grain
    window: DateWindow | None = None
    mvt: MissingValueTreatment | None = None
    with_counts: bool = False

    @property
    def treatment(self) -> MissingValueTreatment:
        return self.mvt if self.mvt is not None else self.family.mvt


@runtime_checkable
class DataAPIBackend(Protocol):
    """A source of single-metric aggregates and table extracts for one AC."""

    @property
    def ac(self) -> AnalyticalContext: ...

    @property
    def name(self) -> str:
        """A short label for provenance: ``polars``, ``sqlite`` or ``postgres``."""
        ...

    def aggregate(self, request: AggregateRequest) -> pl.LazyFrame:
        """One metric at one anchor; see the module docstring for the output contract.

        One row per anchor value present in the (filtered, windowed) rows; NULL is a value of its
        own (a fact row without a dimension row). An empty anchor always gives exactly one row, also
        over zero rows (SUM/MIN/... NULL, COUNT 0, ``__rows`` and ``__nonnull`` 0), like SQL's
        aggregate without GROUP BY.
        """
        ...

    def extract_to_lazyframe(self, schema: str) -> pl.LazyFrame:
        """The rows of ``schema`` (AC filter applied) with logical column names and declared dtypes."""
        ...

    def source_identity(self) -> str:
        """Where the data is read from, never a secret: the resolved Parquet root or SQLite file,
        or PostgreSQL's ``user@host:port/database`` without the password. Two backends over the
        same data give the same identity; the engine serves memoized entries only to their own."""
        ...

    def table_stamp(self, schema: str) -> str:
        """A cheap change detector for the table of ``schema``: it changes when the rows do (within
        the lag ``backends.identity`` documents per source), read without reading the rows."""
        ...

    def close(self) -> None: ...
