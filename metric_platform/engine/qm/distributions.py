"""Value distributions of one column: top values and equal-width histograms (seed 003 §5.5).

``top_values`` is one lazy query, collected once; ``histogram`` needs two (the range, then the
counts per bin), since its edges must be known before values can be compared with them. Their rows
map onto the QM anchors of the seed: ``top_values`` → (schema, column, value), ``histogram`` →
(schema, column, bin_index).

Histogram bins: ``bins`` equal-width bins between the column's min and max (on a Float64 cast).
Bin ``i`` holds ``lower <= x < upper``; the last bin is closed, so the max falls in it. Every bin is
present, empty ones with count 0, and each value is assigned by comparing it with the reported edges
themselves, so the edges and the counts never disagree through float rounding. Nulls, NaN and
infinities are excluded (they have no place on a finite axis). Two deliberate special cases:

- a constant column (min == max) gives a single bin, index 0, with ``lower == upper`` == the value
  and every value counted in it — equal-width bins of a zero-width range would all be that point;
- a column with no finite values gives no rows.
"""

from __future__ import annotations

import polars as pl

from metric_platform.engine.qm.kind_hint import DtypeClass, dtype_class
from metric_platform.engine.qm.profiling import render_text, resolve_columns
from metric_platform.errors import InvalidRequestError

TOP_VALUES_SCHEMA: pl.Schema = pl.Schema(
    {
        "schema": pl.String(),
        "column": pl.String(),
        "value": pl.String(),
        "count": pl.Int64(),
        "rank": pl.Int64(),
    }
)
HISTOGRAM_SCHEMA: pl.Schema = pl.Schema(
    {
        "schema": pl.String(),
        "column": pl.String(),
        "bin_index": pl.Int64(),
        "lower": pl.Float64(),
        "upper": pl.Float64(),
        "count": pl.Int64(),
    }
)


def top_values(
    lf: pl.LazyFrame | pl.DataFrame, schema_name: str, column: str, *, limit: int = 20
) -> pl.DataFrame:
    """The ``limit`` most frequent non-null values of ``column`` in :data:`TOP_VALUES_SCHEMA`.

    ``rank`` is 1 for the most frequent value; equal counts are ordered by value ascending (in the
    column's own order, so ``9`` comes before ``10``), which makes the output deterministic. Values
    are rendered as text the way :mod:`profiling` renders ``min_text``.
    """
    if limit < 1:
        msg = f"top_values needs limit >= 1, got {limit}; ask for at least one value."
        raise InvalidRequestError(msg)
    lazy = lf.lazy()
    name, dtype = resolve_columns(lazy, [column])[0]
    key, key_dtype = pl.col(name), dtype
    if dtype_class(dtype) is DtypeClass.TEXT or isinstance(dtype, pl.Null):
        # Categorical/Enum sort by category; rank their ties by the text users see.
        key, key_dtype = key.cast(pl.String), pl.String()
    rendered = render_text(pl.col("value"), key_dtype)
    if rendered is None:
        msg = (
            f"top values need a column of scalar values (numbers, booleans, text, dates, times); "
            f"column {name!r} has dtype {dtype}. Profile a scalar column or cast this one first."
        )
        raise InvalidRequestError(msg)
    return (
        lazy.select(key.alias("value"))
        .drop_nulls()
        .group_by("value")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort(["count", "value"], descending=[True, False], nulls_last=True)
        .head(limit)
        .select(
            pl.lit(schema_name, pl.String).alias("schema"),
            pl.lit(name, pl.String).alias("column"),
            rendered.alias("value"),
            pl.col("count"),
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("rank"),
        )
        .collect()
    )


def histogram(
    lf: pl.LazyFrame | pl.DataFrame, schema_name: str, column: str, *, bins: int = 10
) -> pl.DataFrame:
    """Equal-width histogram of a numeric ``column`` in :data:`HISTOGRAM_SCHEMA` (see module doc)."""
    if bins < 1:
        msg = f"histogram needs bins >= 1, got {bins}; ask for at least one bin."
        raise InvalidRequestError(msg)
    lazy = lf.lazy()
    name, dtype = resolve_columns(lazy, [column])[0]
    if dtype_class(dtype) not in (DtypeClass.INTEGER, DtypeClass.FLOAT):
        msg = (
            f"histograms need a numeric column (integer, float or decimal); column {name!r} has dtype "
            f"{dtype}. Ask for top values instead, or cast the column to a number first."
        )
        raise InvalidRequestError(msg)

    finite = lazy.select(pl.col(name).cast(pl.Float64).alias("x")).filter(pl.col("x").is_finite())
    low, high, total = (
        finite.select(pl.col("x").min().alias("low"), pl.col("x").max().alias("high"), pl.len())
        .collect()
        .row(0)
    )
    if low is None:
        return _histogram_frame(schema_name, name, [], [])
    if low == high:
        return _histogram_frame(schema_name, name, [(low, high)], [total])
    step = (high - low) / float(bins)
    # Clamped so rounding can never push an interior edge past the max.
    interior = [min(low + float(i) * step, high) for i in range(1, bins)]
    edges = list(zip([low, *interior], [*interior, high], strict=True))
    # Bin = number of interior edges <= x: exact comparisons with the very edges reported below.
    # (Arithmetic like floor((x - low) / step) disagrees with the edges for values on an edge.)
    bin_index = pl.lit(pl.Series(interior, dtype=pl.Float64)).search_sorted(pl.col("x"), side="right")
    counts = finite.group_by(bin_index.cast(pl.Int64).alias("bin_index")).agg(pl.len()).collect()
    by_index = dict(counts.iter_rows())
    return _histogram_frame(schema_name, name, edges, [by_index.get(i, 0) for i in range(bins)])


def _histogram_frame(
    schema_name: str, column: str, edges: list[tuple[float, float]], counts: list[int]
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "schema": [schema_name] * len(edges),
            "column": [column] * len(edges),
            "bin_index": list(range(len(edges))),
            "lower": [lower for lower, _ in edges],
            "upper": [upper for _, upper in edges],
            "count": counts,
        },
        schema=HISTOGRAM_SCHEMA,
    )
