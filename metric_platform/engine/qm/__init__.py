"""The QM (quasi-metadata) domain's shared profiling core: pure Polars, no I/O (seed 003 §2.7, §5.5).

Backends extract a table to a ``pl.LazyFrame``; these functions profile it the same way for every
backend, and :mod:`projections` turns the resulting frames into typed Pydantic views.
"""

from __future__ import annotations

from metric_platform.engine.qm.distributions import HISTOGRAM_SCHEMA, TOP_VALUES_SCHEMA, histogram, top_values
from metric_platform.engine.qm.kind_hint import DtypeClass, KindHint, dtype_class, kind_hint_expr
from metric_platform.engine.qm.profiling import PROFILE_SCHEMA, profile_columns
from metric_platform.engine.qm.projections import (
    ColumnProfile,
    HistogramBin,
    NumericStats,
    TableProfile,
    TemporalStats,
    TextStats,
    ValueCount,
    column_profile_from_frames,
    render_table,
    table_profile_from_frames,
)

__all__ = [
    "HISTOGRAM_SCHEMA",
    "PROFILE_SCHEMA",
    "TOP_VALUES_SCHEMA",
    "ColumnProfile",
    "DtypeClass",
    "HistogramBin",
    "KindHint",
    "NumericStats",
    "TableProfile",
    "TemporalStats",
    "TextStats",
    "ValueCount",
    "column_profile_from_frames",
    "dtype_class",
    "histogram",
    "kind_hint_expr",
    "profile_columns",
    "render_table",
    "table_profile_from_frames",
    "top_values",
]
