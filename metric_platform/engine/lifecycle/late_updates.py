"""The late-update check (seed 003 §2.6): the stability cutoff is keyed on the event day, and the
AC's update-timestamp column tells whether that promise held. A row updated after its day had
passed the cutoff (``updated_at`` later than event day + hold_off_days) may have changed a day the
engine already memoized as stable; such days are reported, and ``refresh(late_updates=True)``
recomputes every memoized slice whose bucket holds one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from metric_platform.backends.protocol import DataAPIBackend, DateWindow
from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.spec import AnalyticalContext


@dataclass(frozen=True)
class LateDay:
    """An event day some of whose rows were updated after the day had become stable."""

    day: dt.date
    rows: int
    last_update: dt.datetime


def late_days(
    frame: pl.LazyFrame, *, day: str, updated: str, hold_off_days: int, until: dt.date
) -> list[LateDay]:
    """Pure: the days up to ``until`` with rows updated on or after day + ``hold_off_days``: the
    day is stable from that calendar day on (``today - hold_off_days >= day``), so a serve that
    day may already have memoized it as final. A date-typed update column counts as midnight."""
    late = (
        frame.select(
            pl.col(day).cast(pl.Date).alias("day"), pl.col(updated).cast(pl.Datetime("us")).alias("updated")
        )
        .filter(pl.col("day") <= until)
        .filter(pl.col("updated").cast(pl.Date) >= pl.col("day") + pl.duration(days=hold_off_days))
        .group_by("day")
        .agg(pl.len().alias("rows"), pl.col("updated").max().alias("last"))
        .sort("day")
        .collect()
    )
    return [LateDay(row["day"], int(row["rows"]), row["last"]) for row in late.iter_rows(named=True)]


def check_late_updates(
    ac: AnalyticalContext, backend: DataAPIBackend, *, until: dt.date, window: DateWindow | None = None
) -> list[LateDay]:
    """Scan the AC's update-timestamp column (two columns of its schema) for late updates."""
    stability = ac.stability
    if stability is None:
        msg = f"AC {ac.name!r} declares no stability block, so there is no update timestamp to check"
        raise InvalidRequestError(msg)
    schema = stability.timestamp_schema
    day_dim = ac.day_dimension
    binding = None if day_dim is None else ac.binding(schema, day_dim)
    if binding is None or binding.join_path:
        msg = (
            f"the update-timestamp schema {schema!r} has no day column of its own; "
            "bind the day dimension to a date column of that schema"
        )
        raise InvalidRequestError(msg)
    frame = backend.extract_to_lazyframe(schema)
    if window is not None:
        frame = frame.filter(pl.col(binding.column).cast(pl.Date).is_between(window.start, window.end))
    return late_days(
        frame,
        day=binding.column,
        updated=stability.timestamp_column,
        hold_off_days=stability.hold_off_days,
        until=until,
    )
