"""Polars expressions with SQL's semantics: literals, filters and time buckets.

The reducers, with their guards where Polars and SQL differ, are in ``polars_reduction``.
"""

from __future__ import annotations

import polars as pl

from metric_platform.backends.normalize import POLARS_DTYPES
from metric_platform.semantics.spec import FilterCondition, FilterOp, FilterValue
from metric_platform.semantics.types import ColumnType, TimeGrain

_TRUNCATE_EVERY = {
    TimeGrain.WEEK: "1w",  # Polars weeks start on Monday, like TimeGrain.bucket_start
    TimeGrain.MONTH: "1mo",
    TimeGrain.QUARTER: "1q",
    TimeGrain.YEAR: "1y",
}


def literal(value: FilterValue, column_type: ColumnType) -> pl.Expr:
    return pl.lit(value, dtype=POLARS_DTYPES[column_type])


def filter_expr(cond: FilterCondition, column: pl.Expr, column_type: ColumnType) -> pl.Expr:
    """A predicate that is NULL (so the row is dropped) wherever SQL's would be."""
    value = cond.value
    values = value if isinstance(value, tuple) else (value,)
    series = pl.Series(values=[v for v in values if v is not None], dtype=POLARS_DTYPES[column_type])
    scalar = None if isinstance(value, tuple) or value is None else literal(value, column_type)
    match cond.op:
        case FilterOp.IS_NULL:
            return column.is_null()
        case FilterOp.NOT_NULL:
            return column.is_not_null()
        case FilterOp.IN:
            return column.is_in(series.implode())
        case FilterOp.NOT_IN:
            return ~column.is_in(series.implode())
        case _:
            pass
    if scalar is None:
        msg = f"filter on {cond.schema}.{cond.column}: operator {cond.op} needs one value"
        raise ValueError(msg)
    match cond.op:
        case FilterOp.EQ:
            return column == scalar
        case FilterOp.NE:
            return column != scalar
        case FilterOp.LT:
            return column < scalar
        case FilterOp.LE:
            return column <= scalar
        case FilterOp.GT:
            return column > scalar
        case FilterOp.GE:
            return column >= scalar
        case _:
            raise AssertionError(cond.op)


def as_day(column: pl.Expr, column_type: ColumnType) -> pl.Expr:
    """A date or timestamp column as the event day it falls on."""
    return column.dt.date() if column_type is ColumnType.TIMESTAMP else column


def bucket_expr(column: pl.Expr, column_type: ColumnType, grain: TimeGrain) -> pl.Expr:
    """The first day (a Date) of the ``grain`` bucket holding each value."""
    day = as_day(column, column_type)
    if grain is TimeGrain.DAY:
        return day
    return day.dt.truncate(_TRUNCATE_EVERY[grain])
