"""Checking YAML literals (filter values, imputation values) against declared column types."""

from __future__ import annotations

import datetime as dt
from typing import Any

from metric_platform.semantics.issues import IssueCollector
from metric_platform.semantics.spec import FilterValue
from metric_platform.semantics.types import ColumnType


def coerce_literal(value: Any, col_type: ColumnType, path: str, issues: IssueCollector) -> FilterValue | None:
    """Check a YAML literal against a column type; returns None (with an issue) when it does not fit."""
    ok: bool
    match col_type:
        case ColumnType.INTEGER:
            ok = isinstance(value, int) and not isinstance(value, bool)
        case ColumnType.FLOAT:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        case ColumnType.STRING:
            ok = isinstance(value, str)
        case ColumnType.BOOLEAN:
            ok = isinstance(value, bool)
        case ColumnType.DATE:
            ok = isinstance(value, dt.date) and not isinstance(value, dt.datetime)
        case ColumnType.TIMESTAMP:
            ok = isinstance(value, dt.datetime)
            if ok and value.tzinfo is not None:
                # Timestamp columns hold naive UTC; an offset would be read three ways by three
                # backends, so it is resolved here, once.
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if not ok:
        issues.add(path, f"value {value!r} does not fit a {col_type} column", f"write a {col_type} literal")
        return None
    result: FilterValue = value
    return result
