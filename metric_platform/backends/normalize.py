"""The dtypes every backend normalises its output to, so results compare equal across backends."""

from __future__ import annotations

import polars as pl

from metric_platform.semantics.operators import Operator, result_type
from metric_platform.semantics.spec import AnalyticalContext, Grain, MetricFamily
from metric_platform.semantics.types import ColumnType

POLARS_DTYPES: dict[ColumnType, pl.DataType] = {
    ColumnType.INTEGER: pl.Int64(),
    ColumnType.FLOAT: pl.Float64(),
    ColumnType.STRING: pl.String(),
    ColumnType.BOOLEAN: pl.Boolean(),
    ColumnType.DATE: pl.Date(),
    ColumnType.TIMESTAMP: pl.Datetime("us"),
}


def dimension_dtype(ac: AnalyticalContext, root: str, dimension: str) -> pl.DataType:
    """Time dimensions are dates (a bucket is its first day); others keep their column's type."""
    (binding,) = ac.bindings(root, (dimension,))
    if binding.time_grain is not None:
        return pl.Date()
    return POLARS_DTYPES[ac.schema(binding.schema).column_type(binding.column)]


def value_dtype(ac: AnalyticalContext, family: MetricFamily) -> pl.DataType:
    column_type = ac.schema(family.root_schema).column_type(family.root_column)
    return POLARS_DTYPES[result_type(family.operator, column_type)]


def result_schema(ac: AnalyticalContext, family: MetricFamily, anchor: Grain) -> pl.Schema:
    """The exact schema of ``aggregate`` output: anchor columns, then the family's value column."""
    cols = [(dim, dimension_dtype(ac, family.root_schema, dim)) for dim in anchor]
    cols.append((family.name, value_dtype(ac, family)))
    return pl.Schema(cols)


def is_counting(operator: Operator) -> bool:
    """COUNT and COUNT_DISTINCT give 0 (not NULL) over a group with no non-null value."""
    return operator in (Operator.COUNT, Operator.COUNT_DISTINCT)
