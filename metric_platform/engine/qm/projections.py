"""Typed projections of QM frames: what callers read, assembled from engine entries (seed 003 §5.5).

The storage medium is the Polars frames of :mod:`profiling` and :mod:`distributions`; these Pydantic
models are views built from one collect of them. Temporal bounds stay ISO 8601 strings, exactly as
profiled, so a time zone or sub-microsecond precision survives the projection unchanged.

``ColumnProfile`` carries ``min_text``/``max_text`` beyond the per-kind stats blocks so that the
bounds of text and boolean columns (which have no numeric or temporal block) can be shown too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from metric_platform.engine.qm.kind_hint import DtypeClass, KindHint, dtype_class_of_name
from metric_platform.errors import InvalidRequestError, UnknownNameError


class _Projection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NumericStats(_Projection):
    """Float64 stats of an integer/float column; all null when it has no non-null value."""

    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    p25: float | None
    p50: float | None
    p75: float | None


class TextStats(_Projection):
    """Lengths, in characters, of the non-null values of a text column."""

    min_length: int | None
    max_length: int | None
    mean_length: float | None


class TemporalStats(_Projection):
    """Bounds of a Date/Datetime/Time column as ISO 8601 strings."""

    min: str | None
    max: str | None


class ValueCount(_Projection):
    value: str
    count: int = Field(ge=1)
    rank: int = Field(ge=1)


class HistogramBin(_Projection):
    index: int = Field(ge=0)
    lower: float
    upper: float
    count: int = Field(ge=0)


class ColumnProfile(_Projection):
    schema_name: str
    column: str
    dtype: str
    kind_hint: KindHint
    row_count: int = Field(ge=0)
    null_count: int = Field(ge=0)
    null_fraction: float = Field(ge=0.0, le=1.0, description="null_count / row_count; 0.0 when empty")
    distinct_count: int | None = Field(ge=0, description="non-null distinct values; None if unhashable")
    min_text: str | None = None
    max_text: str | None = None
    numeric: NumericStats | None
    text: TextStats | None
    temporal: TemporalStats | None
    top_values: tuple[ValueCount, ...] = ()
    histogram: tuple[HistogramBin, ...] = ()


class TableProfile(_Projection):
    schema_name: str
    row_count: int = Field(ge=0)
    columns: tuple[ColumnProfile, ...]

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``; ``UnknownNameError`` lists the known columns."""
        for profile in self.columns:
            if profile.column == name:
                return profile
        known = [profile.column for profile in self.columns]
        msg = f"schema {self.schema_name!r} has no profiled column {name!r}; known columns: {known}."
        raise UnknownNameError(msg)


def _rows_for(frame: pl.DataFrame | None, column: str, what: str) -> list[dict[str, Any]]:
    if frame is None:
        return []
    others = set(frame["column"].unique().to_list()) - {column}
    if others:
        msg = (
            f"{what} rows for columns {sorted(others)} were passed for column {column!r}; "
            "pass only that column's rows."
        )
        raise InvalidRequestError(msg)
    return frame.to_dicts()


def column_profile_from_frames(
    profile_row: pl.DataFrame, top: pl.DataFrame | None = None, hist: pl.DataFrame | None = None
) -> ColumnProfile:
    """Assemble a :class:`ColumnProfile` from one ``PROFILE_SCHEMA`` row and its distributions."""
    if profile_row.height != 1:
        msg = f"a column profile is built from exactly one profile row, got {profile_row.height}."
        raise InvalidRequestError(msg)
    row = profile_row.row(0, named=True)
    cls = dtype_class_of_name(row["dtype"])
    numeric = (
        NumericStats(
            min=row["min_num"],
            max=row["max_num"],
            mean=row["mean"],
            std=row["std"],
            p25=row["p25"],
            p50=row["p50"],
            p75=row["p75"],
        )
        if cls in (DtypeClass.INTEGER, DtypeClass.FLOAT)
        else None
    )
    text = (
        TextStats(min_length=row["min_length"], max_length=row["max_length"], mean_length=row["mean_length"])
        if cls is DtypeClass.TEXT
        else None
    )
    temporal = (
        TemporalStats(min=row["min_temporal"], max=row["max_temporal"])
        if cls is DtypeClass.TEMPORAL
        else None
    )
    tops = sorted(_rows_for(top, row["column"], "top-value"), key=lambda r: int(r["rank"]))
    bins = sorted(_rows_for(hist, row["column"], "histogram"), key=lambda r: int(r["bin_index"]))
    row_count, null_count = int(row["row_count"]), int(row["null_count"])
    return ColumnProfile(
        schema_name=row["schema"],
        column=row["column"],
        dtype=row["dtype"],
        kind_hint=KindHint(row["kind_hint"]),
        row_count=row_count,
        null_count=null_count,
        null_fraction=null_count / row_count if row_count else 0.0,
        distinct_count=row["distinct_count"],
        min_text=row["min_text"],
        max_text=row["max_text"],
        numeric=numeric,
        text=text,
        temporal=temporal,
        top_values=tuple(ValueCount(value=r["value"], count=r["count"], rank=r["rank"]) for r in tops),
        histogram=tuple(
            HistogramBin(index=r["bin_index"], lower=r["lower"], upper=r["upper"], count=r["count"])
            for r in bins
        ),
    )


def table_profile_from_frames(
    schema_name: str,
    profiles: pl.DataFrame,
    tops: Mapping[str, pl.DataFrame] | None = None,
    hists: Mapping[str, pl.DataFrame] | None = None,
) -> TableProfile:
    """Assemble a :class:`TableProfile` from ``PROFILE_SCHEMA`` rows keyed per column by name."""
    foreign = sorted(set(profiles["schema"].to_list()) - {schema_name})
    if foreign:
        msg = (
            f"profile rows of schema(s) {foreign} were passed for schema {schema_name!r}; "
            "pass only that schema's rows."
        )
        raise InvalidRequestError(msg)
    tops, hists = tops or {}, hists or {}
    columns = tuple(
        column_profile_from_frames(profiles.slice(i, 1), tops.get(name), hists.get(name))
        for i, name in enumerate(profiles["column"].to_list())
    )
    row_count = columns[0].row_count if columns else 0
    return TableProfile(schema_name=schema_name, row_count=row_count, columns=columns)


_HEADERS = ("column", "dtype", "kind", "nulls", "distinct", "min", "max", "mean")
_RIGHT_ALIGNED = frozenset({"nulls", "distinct", "mean"})
_MAX_CELL = 32


def _cell(text: str) -> str:
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def _cells(profile: ColumnProfile) -> tuple[str, ...]:
    mean = profile.numeric.mean if profile.numeric is not None else None
    return (
        profile.column,
        profile.dtype.split("(", 1)[0],  # "Datetime(time_unit=...)" → "Datetime": keep it compact
        profile.kind_hint.value,
        f"{profile.null_count} ({profile.null_fraction:.1%})",
        "-" if profile.distinct_count is None else str(profile.distinct_count),
        profile.min_text if profile.min_text is not None else "-",
        profile.max_text if profile.max_text is not None else "-",
        "-" if mean is None else f"{mean:.6g}",
    )


def render_table(profile: TableProfile) -> str:
    """A compact fixed-width text table of ``profile``, one line per column (the CLI's table format)."""
    rows = [_HEADERS, *(tuple(_cell(c) for c in _cells(column)) for column in profile.columns)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]

    def line(row: tuple[str, ...]) -> str:
        parts = (
            cell.rjust(width) if header in _RIGHT_ALIGNED else cell.ljust(width)
            for header, cell, width in zip(_HEADERS, row, widths, strict=True)
        )
        return "  ".join(parts).rstrip()

    noun = "column" if len(profile.columns) == 1 else "columns"
    title = f"{profile.schema_name}: {profile.row_count} rows, {len(profile.columns)} {noun}"
    rule = "  ".join("-" * width for width in widths)
    return "\n".join([title, line(rows[0]), rule, *(line(row) for row in rows[1:])])
