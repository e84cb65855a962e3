"""Polars expressions with SQL's semantics: filters, time buckets and guarded reducers.

SQL is the reference (ARCHITECTURE.md §9). Where Polars differs it is guarded here: ``sum`` over
no non-null value gives 0 and ``all()`` gives True (SQL: NULL), ``n_unique`` counts NULL (SQL's
COUNT DISTINCT does not), and ``count`` gives UInt32 (normalised to Int64 by the caller's cast).
"""

from __future__ import annotations

from typing import assert_never

import polars as pl

from metric_platform.backends.normalize import POLARS_DTYPES
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.spec import FilterCondition, FilterOp, FilterValue
from metric_platform.semantics.types import ColumnType, MissingValueKind, TimeGrain

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


def reduce_expr(
    operator: Operator,
    treatment: MissingValueKind,
    x: pl.Expr,
    *,
    impute: pl.Expr | None = None,
) -> pl.Expr:
    """The aggregate of ``x`` for one group (or the whole frame in a ``select``)."""
    match treatment:
        case MissingValueKind.SKIP:
            return _skip_nulls(operator, x)
        case MissingValueKind.PROPAGATE:
            return pl.when(x.null_count() > 0).then(None).otherwise(_skip_nulls(operator, x))
        case MissingValueKind.IMPUTE:
            if impute is None:
                msg = "an impute treatment needs its value"
                raise ValueError(msg)
            return _skip_nulls(operator, x.fill_null(impute))
        case _:
            assert_never(treatment)


def _skip_nulls(operator: Operator, x: pl.Expr) -> pl.Expr:
    """SQL's aggregate: NULLs ignored, NULL over no non-null value (COUNT: 0)."""
    has_value = x.count() > 0
    match operator:
        case Operator.SUM:
            return pl.when(has_value).then(x.sum())
        case Operator.COUNT:
            return x.count()
        case Operator.MIN:
            return x.min()
        case Operator.MAX:
            return x.max()
        case Operator.BOOL_AND:
            return pl.when(has_value).then(x.all())
        case Operator.BOOL_OR:
            return pl.when(has_value).then(x.any())
        case Operator.AVG:
            return x.cast(pl.Float64).mean()
        case Operator.MEDIAN:
            # Polars' median interpolates the two middle values, like percentile_cont(0.5).
            return x.cast(pl.Float64).median()
        case Operator.COUNT_DISTINCT:
            return x.drop_nulls().n_unique()
        case _:
            assert_never(operator)
