"""Name the column and value behind a row the driver could not convert (SQLite's loose typing).

SQLite keeps whatever a row holds: an epoch integer in a column the AC declares ``timestamp`` reaches
SQLAlchemy's ISO-text parser and fails there with a bare ``TypeError``/``ValueError`` that names
nothing. This runs only after such a failure, one ``LIMIT 1`` probe per date/timestamp column read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from metric_platform.backends.sql_expressions import SQLITE
from metric_platform.semantics.spec import SchemaSpec
from metric_platform.semantics.types import ColumnType

_EPOCH_FIX = {ColumnType.DATE: "date({c}, 'unixepoch')", ColumnType.TIMESTAMP: "datetime({c}, 'unixepoch')"}


def describe_unconvertible(conn: Connection, specs: Sequence[SchemaSpec], dialect: str) -> str:
    """What was wrong and how to fix it, as precisely as a cheap probe can tell."""
    candidates = [
        (spec, column, ctype)
        for spec in specs
        for column, ctype in spec.columns.items()
        if ctype in (ColumnType.DATE, ColumnType.TIMESTAMP)
    ]
    if dialect == SQLITE:
        for spec, column, ctype in candidates:
            found = _first_bad_value(conn, spec, column)
            if found is not None:
                return _explain(spec, column, ctype, *found)
    named = ", ".join(f"{s.name}.{c} ({t})" for s, c, t in candidates) or "none"
    return (
        "a stored value does not convert to its declared type (date/timestamp columns read: "
        f"{named}); fix the stored values or the types declared in the AC"
    )


def _first_bad_value(conn: Connection, spec: SchemaSpec, column: str) -> tuple[Any, str] | None:
    """A value SQLite's own date() cannot read either (not ISO-8601 text), with its storage class."""
    table = sa.table(spec.table, sa.column(spec.physical(column)), schema=spec.db_schema)
    col = table.c[spec.physical(column)]
    storage = sa.func.typeof(col)
    stmt = (
        sa.select(col, storage)
        .where(col.is_not(None), sa.or_(storage != "text", sa.func.date(col).is_(None)))
        .limit(1)
    )
    try:
        row = conn.execute(stmt).first()
    except sa.exc.SQLAlchemyError:
        return None  # the probe is a courtesy: the generic message still names the candidates
    return None if row is None else (row[0], str(row[1]))


def _explain(spec: SchemaSpec, column: str, ctype: ColumnType, value: Any, storage: str) -> str:
    physical = spec.physical(column)
    stored = f"{value!r} (a SQLite {storage})" if storage != "text" else repr(value)
    if storage in ("integer", "real"):
        update = _EPOCH_FIX[ctype].format(c=physical)
        fix = (
            f"store it as ISO-8601 text (for Unix epoch seconds: UPDATE {spec.table} SET {physical} = "
            f"{update}) or declare the column integer in the AC"
        )
    else:
        fix = "store it as ISO-8601 text ('YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS[.ffffff]')"
    return (
        f"schema {spec.name!r}: column {column!r} (table {spec.table!r}) holds {stored}, which is not "
        f"a {ctype}: SQLite has no date type, so dates and timestamps are read as ISO-8601 text; {fix}"
    )
