"""Dtype classes and the kind-hint heuristic, as Polars expressions (seed 003 §5.5).

Every backend used to re-derive this heuristic; it now lives here once and runs over the per-column
facts that :func:`metric_platform.engine.qm.profiling.profile_columns` gathers in its single pass.

Dtype classes (by the Polars dtype's base name, so a stored dtype string classifies the same way):

- ``integer``: every signed/unsigned integer type;
- ``float``: Float32, Float64 and Decimal (stats are computed on a Float64 cast);
- ``boolean``: Boolean — never numeric;
- ``temporal``: Date, Datetime, Time;
- ``text``: String, Categorical, Enum (Categorical/Enum are profiled as their string values);
- ``other``: everything else (Null, Binary, Duration, List, Array, Struct, Object, ...).

Kind-hint rules, with ``n`` = non-null count and ``d`` = distinct non-null count; the first rule
that matches wins:

1. ``boolean`` dtype → ``boolean``.
2. ``temporal`` dtype → ``temporal``.
3. ``integer``/``text`` whose name looks like an id (``id``, ``*_id``, ``*-id``, ``* id`` in any
   case, or camelCase ``customerId``/``customerID``) → ``identifier``.
4. ``integer``/``text`` with ``n >= 2`` and ``d == n`` (every value unique) → ``identifier`` —
   except text that reads like prose (see 7): unique sentences are free text, not keys.
5. ``integer``/``text`` with low cardinality, ``d <= max(20, 5% of n)`` → ``categorical``
   (this includes all-null and empty columns of those classes).
6. ``integer``/``float`` → ``numeric``.
7. ``text`` that reads like prose — mean length above 30 characters, or whitespace in more than
   half of the non-null values — → ``free_text``.
8. Anything else → ``categorical``.
"""

from __future__ import annotations

from enum import StrEnum

import polars as pl


class KindHint(StrEnum):
    """What a column most likely holds; a hint for planners and UIs, never a constraint."""

    IDENTIFIER = "identifier"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    NUMERIC = "numeric"
    TEMPORAL = "temporal"
    FREE_TEXT = "free_text"


class DtypeClass(StrEnum):
    """The coarse dtype families the profiler and the heuristic branch on."""

    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    TEMPORAL = "temporal"
    TEXT = "text"
    OTHER = "other"


_INTEGER_NAMES = frozenset(
    {"Int8", "Int16", "Int32", "Int64", "Int128", "UInt8", "UInt16", "UInt32", "UInt64", "UInt128"}
)
_CLASS_BY_NAME: dict[str, DtypeClass] = {
    **dict.fromkeys(_INTEGER_NAMES, DtypeClass.INTEGER),
    **dict.fromkeys(("Float32", "Float64", "Decimal"), DtypeClass.FLOAT),
    "Boolean": DtypeClass.BOOLEAN,
    **dict.fromkeys(("Date", "Datetime", "Time"), DtypeClass.TEMPORAL),
    **dict.fromkeys(("String", "Categorical", "Enum"), DtypeClass.TEXT),
}

# Thresholds of the rules above; named so the docstring and the code cannot drift apart silently.
LOW_CARDINALITY_FLOOR = 20
LOW_CARDINALITY_FRACTION = 0.05
PROSE_MEAN_LENGTH = 30.0
_ID_NAME_PATTERN = r"(?i:(^|[_\-\s])id$)|[a-z0-9](Id|ID)$"

# Columns of the per-column facts frame that :func:`kind_hint_expr` reads.
FACT_COLUMN = "column"
FACT_DTYPE_CLASS = "dtype_class"
FACT_ROW_COUNT = "row_count"
FACT_NULL_COUNT = "null_count"
FACT_DISTINCT_COUNT = "distinct_count"
FACT_MEAN_LENGTH = "mean_length"
FACT_WHITESPACE_COUNT = "whitespace_count"


def dtype_class_of_name(dtype_name: str) -> DtypeClass:
    """Classify a Polars dtype by its rendered name, e.g. ``"Datetime(time_unit='us', ...)"``."""
    return _CLASS_BY_NAME.get(dtype_name.split("(", 1)[0], DtypeClass.OTHER)


def dtype_class(dtype: pl.DataType) -> DtypeClass:
    """Classify a Polars dtype (see the module docstring for the families)."""
    return dtype_class_of_name(str(dtype))


def kind_hint_expr() -> pl.Expr:
    """The kind hint (String, one of :class:`KindHint`) over a frame of per-column facts.

    Reads the ``FACT_*`` columns: the column name, its :class:`DtypeClass` value, row/null/distinct
    counts, the mean string length and the number of values containing whitespace (both null or
    ignored for non-text columns).
    """
    cls = pl.col(FACT_DTYPE_CLASS)
    non_null = pl.col(FACT_ROW_COUNT) - pl.col(FACT_NULL_COUNT)
    distinct = pl.col(FACT_DISTINCT_COUNT)
    keyish = cls.is_in([DtypeClass.INTEGER.value, DtypeClass.TEXT.value])
    is_text = cls == DtypeClass.TEXT.value
    prose = is_text & (
        (pl.col(FACT_MEAN_LENGTH).fill_null(0.0) > PROSE_MEAN_LENGTH)
        | (pl.col(FACT_WHITESPACE_COUNT).fill_null(0) * 2 > non_null)
    )
    all_distinct = (non_null >= 2) & (distinct == non_null)
    low_cardinality = distinct <= pl.max_horizontal(
        pl.lit(LOW_CARDINALITY_FLOOR, pl.Float64), non_null.cast(pl.Float64) * LOW_CARDINALITY_FRACTION
    )
    return (
        pl.when(cls == DtypeClass.BOOLEAN.value)
        .then(pl.lit(KindHint.BOOLEAN.value))
        .when(cls == DtypeClass.TEMPORAL.value)
        .then(pl.lit(KindHint.TEMPORAL.value))
        .when(keyish & pl.col(FACT_COLUMN).str.contains(_ID_NAME_PATTERN))
        .then(pl.lit(KindHint.IDENTIFIER.value))
        .when(keyish & all_distinct & ~prose)
        .then(pl.lit(KindHint.IDENTIFIER.value))
        .when(keyish & low_cardinality)
        .then(pl.lit(KindHint.CATEGORICAL.value))
        .when(cls.is_in([DtypeClass.INTEGER.value, DtypeClass.FLOAT.value]))
        .then(pl.lit(KindHint.NUMERIC.value))
        .when(prose)
        .then(pl.lit(KindHint.FREE_TEXT.value))
        .otherwise(pl.lit(KindHint.CATEGORICAL.value))
        .cast(pl.String)
        .alias("kind_hint")
    )
