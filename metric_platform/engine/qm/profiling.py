"""Column profiles in one pass over a LazyFrame (seed 003 §2.7, §5.5, §13.4).

Every backend hands the engine ``extract_to_lazyframe(table)``; the profile is computed here, so it
is identical from every backend by construction. :func:`profile_columns` builds one ``select`` of
aggregate expressions over all requested columns, collects it once (a single pass over the source)
and reshapes the one wide row into one row per column in :data:`PROFILE_SCHEMA`.

Semantics, chosen to match SQL aggregates:

- ``row_count`` counts rows, ``null_count`` NULLs; ``distinct_count`` counts distinct non-null
  values (``COUNT(DISTINCT c)``); all three are 0 on an empty frame.
- Numeric stats (integer and float/Decimal columns, never Boolean) are computed on a Float64 cast:
  ``std`` is the sample standard deviation (``stddev_samp``, null below two values), quantiles use
  linear interpolation (``quantile_cont``). Polars ignores NaN in min/max, unlike SQL engines that
  order NaN last; profile data with NaN accordingly.
- ``min_text``/``max_text`` render the min/max of any orderable column as text: numbers as Polars
  prints them (exact for integers), ``false``/``true``, strings as is (Categorical/Enum compared as
  strings), and temporal values in ISO 8601 (``2024-01-02``, ``2024-01-02T03:04:05.5+01:00``,
  ``03:04:05``); ``min_temporal``/``max_temporal`` repeat those for temporal columns.
- Text stats count characters (code points) and are filled for String/Categorical/Enum only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import polars as pl

from metric_platform.engine.qm.kind_hint import (
    FACT_DTYPE_CLASS,
    FACT_WHITESPACE_COUNT,
    DtypeClass,
    dtype_class,
    kind_hint_expr,
)
from metric_platform.errors import UnknownNameError

PROFILE_SCHEMA: pl.Schema = pl.Schema(
    {
        "schema": pl.String(),
        "column": pl.String(),
        "dtype": pl.String(),
        "kind_hint": pl.String(),
        "row_count": pl.Int64(),
        "null_count": pl.Int64(),
        "distinct_count": pl.Int64(),
        "min_num": pl.Float64(),
        "max_num": pl.Float64(),
        "mean": pl.Float64(),
        "std": pl.Float64(),
        "p25": pl.Float64(),
        "p50": pl.Float64(),
        "p75": pl.Float64(),
        "min_text": pl.String(),
        "max_text": pl.String(),
        "min_length": pl.Int64(),
        "max_length": pl.Int64(),
        "mean_length": pl.Float64(),
        "min_temporal": pl.String(),
        "max_temporal": pl.String(),
    }
)

QUANTILE_INTERPOLATION: Final[Literal["linear"]] = "linear"  # = SQL quantile_cont

# The reshaped frame carries two helper facts for the kind hint; they are dropped afterwards.
_FACTS_SCHEMA = pl.Schema(
    {**PROFILE_SCHEMA, FACT_DTYPE_CLASS: pl.String(), FACT_WHITESPACE_COUNT: pl.Int64()}
)
_NUMERIC = (DtypeClass.INTEGER, DtypeClass.FLOAT)
_ORDERABLE = (*_NUMERIC, DtypeClass.BOOLEAN, DtypeClass.TEMPORAL, DtypeClass.TEXT)
_ROW_COUNT = "__row_count"
# Facts gathered per column by the aggregates (a column gets the subset its dtype allows).
_STATS = tuple(
    name
    for name in _FACTS_SCHEMA.names()
    if name not in ("schema", "column", "dtype", "kind_hint", "row_count", FACT_DTYPE_CLASS)
)


def resolve_columns(lf: pl.LazyFrame, columns: Sequence[str] | None = None) -> list[tuple[str, pl.DataType]]:
    """The requested columns (all, in frame order, when ``None``) with their dtypes.

    Duplicates are dropped, keeping the first occurrence. Resolving a schema does not read data.
    """
    schema = lf.collect_schema()
    wanted = list(schema.names()) if columns is None else list(dict.fromkeys(columns))
    unknown = [name for name in wanted if name not in schema]
    if unknown:
        msg = (
            f"unknown column(s) {unknown}; the frame has columns {list(schema.names())}. "
            "Check the column names against the table's schema."
        )
        raise UnknownNameError(msg)
    return [(name, schema[name]) for name in wanted]


def render_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr | None:
    """``expr`` (of ``dtype``) rendered as text, or ``None`` when the dtype has no text form here."""
    if isinstance(dtype, pl.Date):
        return expr.dt.to_string("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime):
        zone = "%:z" if dtype.time_zone is not None else ""
        return expr.dt.to_string(f"%Y-%m-%dT%H:%M:%S%.f{zone}")
    if isinstance(dtype, pl.Time):
        return expr.dt.to_string("%H:%M:%S%.f")
    if dtype_class(dtype) in (*_NUMERIC, DtypeClass.BOOLEAN, DtypeClass.TEXT):
        return expr.cast(pl.String)
    return None


def _column_exprs(index: int, name: str, dtype: pl.DataType) -> list[pl.Expr]:
    """The aggregates for one column, aliased ``"{index}:{stat}"`` so names never collide."""
    cls = dtype_class(dtype)
    col = pl.col(name)
    stats: dict[str, pl.Expr] = {"null_count": col.null_count().cast(pl.Int64)}
    if not isinstance(dtype, pl.Object):  # Object values are not hashable by Polars
        stats["distinct_count"] = col.drop_nulls().n_unique().cast(pl.Int64)
    if cls in _NUMERIC:
        num = col.cast(pl.Float64)
        stats |= {
            "min_num": num.min(),
            "max_num": num.max(),
            "mean": num.mean(),
            "std": num.std(ddof=1),
            "p25": num.quantile(0.25, QUANTILE_INTERPOLATION),
            "p50": num.quantile(0.50, QUANTILE_INTERPOLATION),
            "p75": num.quantile(0.75, QUANTILE_INTERPOLATION),
        }
    if cls in _ORDERABLE:
        # Categorical/Enum order by category, not text; compare them as the strings they show.
        ordered, ordered_dtype = (
            (col.cast(pl.String), pl.String()) if cls is DtypeClass.TEXT else (col, dtype)
        )
        low = render_text(ordered.min(), ordered_dtype)
        high = render_text(ordered.max(), ordered_dtype)
        if low is not None and high is not None:
            stats |= {"min_text": low, "max_text": high}
            if cls is DtypeClass.TEMPORAL:
                stats |= {"min_temporal": low, "max_temporal": high}
    if cls is DtypeClass.TEXT:
        text = col.cast(pl.String)
        length = text.str.len_chars()
        stats |= {
            "min_length": length.min().cast(pl.Int64),
            "max_length": length.max().cast(pl.Int64),
            "mean_length": length.mean(),
            FACT_WHITESPACE_COUNT: text.str.contains(r"\s").sum().cast(pl.Int64),
        }
    return [expr.alias(f"{index}:{stat}") for stat, expr in stats.items()]


def profile_columns(
    lf: pl.LazyFrame | pl.DataFrame, schema_name: str, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """One row per requested column in :data:`PROFILE_SCHEMA`, from a single pass over ``lf``.

    ``columns`` defaults to every column of ``lf``; unknown names raise ``UnknownNameError``.

    >>> frame = pl.LazyFrame({"region": ["north", "south", None]})
    >>> profile_columns(frame, "sales").select("column", "null_count", "distinct_count").row(0)
    ('region', 1, 2)
    """
    lazy = lf.lazy()
    resolved = resolve_columns(lazy, columns)
    if not resolved:
        return pl.DataFrame(schema=PROFILE_SCHEMA)
    exprs = [pl.len().cast(pl.Int64).alias(_ROW_COUNT)]
    for index, (name, dtype) in enumerate(resolved):
        exprs.extend(_column_exprs(index, name, dtype))
    wide = lazy.select(exprs).collect().row(0, named=True)  # the one pass

    rows = [
        {
            "schema": schema_name,
            "column": name,
            "dtype": str(dtype),
            "row_count": wide[_ROW_COUNT],
            FACT_DTYPE_CLASS: dtype_class(dtype).value,
            **{stat: wide.get(f"{index}:{stat}") for stat in _STATS},
        }
        for index, (name, dtype) in enumerate(resolved)
    ]
    facts = pl.DataFrame(rows, schema=_FACTS_SCHEMA)
    return facts.with_columns(kind_hint_expr()).select(PROFILE_SCHEMA.names())
