"""Load Polars frames into SQLite or PostgreSQL tables (the sample data for the SQL backends).

One table per frame, typed from the Polars dtypes. Each table is dropped, created and filled in
one transaction, so a reader sees the old table or the whole new one. PostgreSQL rows go through
psycopg 3's ``COPY`` (measured ~4x faster than ``executemany``); SQLite rows through chunked
``executemany`` of a Core insert, whose DATE/TIMESTAMP types store ISO text that SQLAlchemy reads
back as ``date``/``datetime``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import polars as pl
import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.types import TypeEngine

from metric_platform.db import create_db_engine, describe_url, write_transaction
from metric_platform.errors import InvalidRequestError, SourceError, StorageError, UnsupportedOperationError

SQLITE_CHUNK_ROWS = 10_000

_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)


def sql_type(dtype: pl.DataType) -> TypeEngine[Any] | None:
    """The SQLAlchemy type a column of ``dtype`` is stored as, or None when it has none."""
    if isinstance(dtype, _INTEGERS):
        return sa.BigInteger()
    if isinstance(dtype, pl.Float32 | pl.Float64):
        return sa.Double()
    if isinstance(dtype, pl.String | pl.Categorical | pl.Enum):
        return sa.Text()
    if isinstance(dtype, pl.Boolean):
        return sa.Boolean()
    if isinstance(dtype, pl.Date):
        return sa.Date()
    # Naive timestamps only: SQLite has no time zones, and the platform keeps UTC naive.
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return sa.TIMESTAMP()
    return None


def table_for(name: str, schema: pl.Schema, metadata: sa.MetaData) -> sa.Table:
    """A SQLAlchemy table for a frame of ``schema``; an unsupported dtype names table and column."""
    if not schema:
        msg = f"frame for table {name!r} has no columns; a SQL table needs at least one"
        raise InvalidRequestError(msg)
    columns = []
    for column, dtype in schema.items():
        type_ = sql_type(dtype)
        if type_ is None:
            msg = (
                f"table {name!r}, column {column!r}: dtype {dtype} cannot be loaded into SQL; cast it to "
                "Int64, Float64, String, Boolean, Date or a naive Datetime first"
            )
            raise UnsupportedOperationError(msg)
        columns.append(sa.Column(column, type_))
    return sa.Table(name, metadata, *columns)


def load_frames(
    url_or_engine: str | Engine, frames: Mapping[str, pl.DataFrame], *, replace: bool = True
) -> None:
    """Create one table per frame (named by its key) and insert every row.

    ``replace=True`` drops an existing table first; ``replace=False`` creates missing tables and
    appends to existing ones. Every dtype is checked before the database is touched.
    """
    metadata = sa.MetaData()
    tables = {name: table_for(name, frame.schema, metadata) for name, frame in frames.items()}
    with _engine(url_or_engine) as engine:
        _check_reachable(engine)
        for name, frame in frames.items():
            _load_table(engine, tables[name], frame, replace=replace)


@contextmanager
def _engine(url_or_engine: str | Engine) -> Iterator[Engine]:
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    try:
        engine = create_db_engine(url_or_engine)
    except (StorageError, sa.exc.ArgumentError) as exc:
        msg = f"cannot open database {_hide_password(url_or_engine)}: {exc}"
        raise SourceError(msg) from exc
    try:
        yield engine
    finally:
        engine.dispose()


def _check_reachable(engine: Engine) -> None:
    # Connection failures are the user's to fix (URL, server, credentials), so SourceError;
    # anything failing later, mid-load, is a storage fault.
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as exc:
        detail = str(exc.orig or exc).strip().splitlines()[0]
        msg = (
            f"cannot connect to {describe_url(engine)}: {detail}; "
            "check the URL, that the server is running and the credentials"
        )
        raise SourceError(msg) from exc


def _load_table(engine: Engine, table: sa.Table, frame: pl.DataFrame, *, replace: bool) -> None:
    with write_transaction(engine) as conn:
        _begin_if_autocommitting(conn)
        if replace:
            table.drop(conn, checkfirst=True)
        table.create(conn, checkfirst=not replace)
        if frame.is_empty():
            return
        if engine.dialect.name == "postgresql":
            _copy_rows(conn, table, frame)
        else:
            for start in range(0, frame.height, SQLITE_CHUNK_ROWS):
                conn.execute(table.insert(), frame.slice(start, SQLITE_CHUNK_ROWS).to_dicts())


def _begin_if_autocommitting(conn: Connection) -> None:
    # An engine not made by create_db_engine leaves pysqlite's legacy mode on, where DDL runs
    # outside any transaction: open one so drop + create + insert stay atomic.
    if conn.dialect.name != "sqlite":
        return
    driver = conn.connection.driver_connection
    if driver is not None and not driver.in_transaction:
        conn.exec_driver_sql("BEGIN")


def _copy_rows(conn: Connection, table: sa.Table, frame: pl.DataFrame) -> None:
    driver = cast("psycopg.Connection[Any]", conn.connection.driver_connection)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    )
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in frame.iter_rows():
                copy.write_row(row)
    except psycopg.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"COPY into table {table.name!r} failed: {detail}; the table was left as it was before the load"
        raise StorageError(msg) from exc


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        # Unparseable, so we cannot tell where a password would be: do not echo it.
        return "<unparseable URL>"
