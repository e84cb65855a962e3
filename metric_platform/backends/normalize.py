"""The dtypes every backend normalises its output to, so results compare equal across backends."""

from __future__ import annotations

import polars as pl

from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.operators import result_type
from metric_platform.semantics.spec import AnalyticalContext, Grain, MetricFamily
from metric_platform.semantics.types import ColumnType

# The counts an ``AggregateRequest(with_counts=True)`` adds after the value column, for SQL-exact
# rollups (ARCHITECTURE.md §9): COUNT(*) of the group and COUNT(root column) before any imputation.
ROWS_COLUMN = "__rows"
NONNULL_COLUMN = "__nonnull"
COUNT_COLUMNS = (ROWS_COLUMN, NONNULL_COLUMN)

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


def result_schema(
    ac: AnalyticalContext, family: MetricFamily, anchor: Grain, *, with_counts: bool = False
) -> pl.Schema:
    """The exact schema of ``aggregate`` output: anchor columns, the family's value column, then
    (``with_counts``) ``__rows`` and ``__nonnull``, both Int64."""
    cols = [(dim, dimension_dtype(ac, family.root_schema, dim)) for dim in anchor]
    cols.append((family.name, value_dtype(ac, family)))
    if with_counts:
        taken = sorted({family.name, *anchor} & set(COUNT_COLUMNS))
        if taken:
            msg = (
                f"with_counts adds the columns {', '.join(COUNT_COLUMNS)}, but {', '.join(taken)} already "
                f"names the metric family or an anchor dimension of {family.name!r}; rename it in the AC"
            )
            raise InvalidRequestError(msg)
        cols += [(name, pl.Int64()) for name in COUNT_COLUMNS]
    return pl.Schema(cols)
