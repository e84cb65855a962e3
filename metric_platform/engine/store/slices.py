"""Checking a ``publish_slices`` request and dividing its one file among its slices (pure, no I/O).

Slices are logical: the rows of many slices lie in one Parquet file, and each slice's manifest row
records its row count and a share of the file's bytes, so the per-AC byte total stays the disk use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from metric_platform.engine.store.keys import WHOLE_ENTRY, EntryKey
from metric_platform.engine.store.records import EntryMeta
from metric_platform.errors import InvalidRequestError

_SHOWN = 5  # offending values named in a message; the rest are counted


@dataclass(frozen=True)
class SlicePlan:
    """A checked request: the frame to write (grouped by slice) and each slice's row count and meta."""

    frame: pl.DataFrame
    days: tuple[date, ...]  # in the caller's order
    row_counts: Mapping[date, int]
    metas: Mapping[date, EntryMeta]


def plan_slices(
    base: EntryKey,
    frame: pl.DataFrame,
    *,
    slice_column: str,
    slices: Sequence[date],
    meta: EntryMeta | Mapping[date, EntryMeta],
) -> SlicePlan:
    """Check a ``publish_slices`` request; raise InvalidRequestError saying how to fix it."""
    where = base.describe() if isinstance(base, EntryKey) else repr(base)
    if not isinstance(base, EntryKey) or base.slice_key != WHOLE_ENTRY:
        msg = f"publish_slices takes the key without a slice, got {where}; pass key.base"
        raise InvalidRequestError(msg)
    if not isinstance(frame, pl.DataFrame):
        msg = f"publish_slices of {where} needs a polars.DataFrame (collect a LazyFrame first)"
        raise InvalidRequestError(msg)
    days = _checked_days(where, slices)
    dtype = frame.schema.get(slice_column)
    if dtype != pl.Date:
        found = "is missing" if dtype is None else f"is {dtype}"
        msg = (
            f"publish_slices of {where}: slice column {slice_column!r} {found}; "
            f"pass the name of a pl.Date column of the frame (columns: {frame.columns})"
        )
        raise InvalidRequestError(msg)
    counts = _row_counts(where, frame, slice_column, set(days))
    # Rows grouped by slice: a reader of a few days then touches few row groups (min/max stats).
    column = frame.get_column(slice_column)
    ordered = frame if column.is_sorted() else frame.sort(slice_column, maintain_order=True)
    return SlicePlan(
        frame=ordered,
        days=days,
        row_counts={day: counts.get(day, 0) for day in days},
        metas=_metas(where, meta, days),
    )


def apportion_bytes(file_size: int, row_counts: Sequence[int]) -> list[int]:
    """Split ``file_size`` over slices by rows so the parts sum exactly to it (largest remainder).

    Empty slices get 0; when every slice is empty the bytes (the file's schema) are split evenly.

    >>> apportion_bytes(10, [1, 1, 1, 0])
    [4, 3, 3, 0]
    """
    weights = list(row_counts) if any(row_counts) else [1] * len(row_counts)
    total = sum(weights)
    if total == 0:
        return []
    shares = [file_size * weight // total for weight in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(file_size * weights[i] % total), i))
    for i in remainders[: file_size - sum(shares)]:
        shares[i] += 1
    return shares


def _checked_days(where: str, slices: Sequence[date]) -> tuple[date, ...]:
    days = tuple(slices)
    for day in days:
        if not isinstance(day, date) or isinstance(day, datetime):
            msg = f"publish_slices of {where}: slices must be datetime.date values, got {day!r}"
            raise InvalidRequestError(msg)
    if len(set(days)) != len(days):
        twice = sorted({day for day in days if days.count(day) > 1})
        msg = f"publish_slices of {where} got slice(s) {_name(twice)} twice; list each slice once"
        raise InvalidRequestError(msg)
    return days


def _row_counts(where: str, frame: pl.DataFrame, slice_column: str, days: set[date]) -> dict[date, int]:
    counted = frame.get_column(slice_column).value_counts(name="rows")
    counts: dict[date | None, int] = dict(
        zip(counted.get_column(slice_column).to_list(), counted.get_column("rows").to_list(), strict=True)
    )
    stray = [value for value in counts if value not in days]
    if stray:
        rows = sum(counts[value] for value in stray)
        shown = _name(sorted(stray, key=lambda v: (v is not None, v or date.min)))
        msg = (
            f"publish_slices of {where}: {rows} row(s) have {slice_column} = {shown}, which is not "
            "among the slices given; add those days to slices= or drop the rows"
        )
        raise InvalidRequestError(msg)
    return {day: n for day, n in counts.items() if day is not None}


def _metas(
    where: str, meta: EntryMeta | Mapping[date, EntryMeta], days: tuple[date, ...]
) -> dict[date, EntryMeta]:
    if isinstance(meta, EntryMeta):
        return dict.fromkeys(days, meta)
    if not isinstance(meta, Mapping):
        msg = f"publish_slices of {where}: meta must be an EntryMeta or a mapping day -> EntryMeta"
        raise InvalidRequestError(msg)
    missing = [day for day in days if day not in meta]
    extra = [day for day in meta if day not in set(days)]
    if missing or extra:
        msg = (
            f"publish_slices of {where}: the meta mapping must have exactly the given slices; "
            f"missing {_name(missing)}, extra {_name(extra)}"
        )
        raise InvalidRequestError(msg)
    for day in days:
        if not isinstance(meta[day], EntryMeta):
            msg = f"publish_slices of {where}: meta for {day} is {type(meta[day]).__name__}, not EntryMeta"
            raise InvalidRequestError(msg)
    return {day: meta[day] for day in days}


def _name(values: Sequence[date | None]) -> str:
    if not values:
        return "none"
    shown = ", ".join("null" if v is None else v.isoformat() for v in values[:_SHOWN])
    more = len(values) - _SHOWN
    return f"{shown} (and {more} more)" if more > 0 else shown
