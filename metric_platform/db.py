"""One way to open and use every platform database (engine manifest, ledger, read-model).

SQLite writers must take the write lock when their transaction starts. SQLAlchemy over pysqlite
otherwise opens deferred transactions, and a read-then-write across 4 processes x 200 increments
silently lost 600 of 800 updates in a probe here (ARCHITECTURE.md §6). So pysqlite's own
transaction handling is switched off and the ``begin`` listener below emits ``BEGIN IMMEDIATE`` for
:func:`write_transaction` and a plain ``BEGIN`` for everything else.

The read-then-write pattern that is safe on both dialects::

    with write_transaction(engine) as conn:
        row = conn.execute(select(t.c.n).where(t.c.id == 1).with_for_update()).one()
        conn.execute(update(t).where(t.c.id == 1).values(n=row.n + 1))

On SQLite ``with_for_update()`` renders nothing (``BEGIN IMMEDIATE`` already serialises writers);
on PostgreSQL (READ COMMITTED) it locks the row until commit. A single
``UPDATE ... RETURNING`` is equally safe on both.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from metric_platform import write_guard
from metric_platform.errors import StorageError

BUSY_TIMEOUT_MS = 30_000
# A source session never writes.
SOURCE_SESSION_OPTIONS = "-c default_transaction_read_only=on"
_WRITE_OPTION = "mp_write"
# Statement and lock timeouts only help once the server answers: a host that accepts the TCP
# connection and then says nothing (a half-dead proxy, a blackholed route) would hold a caller
# with a latency budget (the ledger's, seed 004 §5) for minutes. libpq's connect_timeout bounds the
# whole connection start-up and TCP keepalives notice a peer that went away mid-session. These are
# defaults: a URL's own query parameters (``?connect_timeout=20``) win (see ``_pg_connect_args``).
PG_CONNECT_ARGS: dict[str, int] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    # Keepalives only probe an idle socket; a query sent into a blackhole is governed by TCP
    # retransmission (~15 min on Linux) unless unacknowledged data times out sooner.
    "tcp_user_timeout": 10_000,
}


def create_db_engine(url: str, *, read_only: bool = False) -> Engine:
    """Create an engine for ``url`` with the platform's SQLite or PostgreSQL settings.

    ``postgresql://`` and ``postgres://`` URLs use psycopg 3; a SQLite file's directory is created.
    ``read_only`` is for source databases the platform only reads: a SQLite file is opened with
    ``mode=ro`` and its journal mode left alone; a PostgreSQL session is read-only (its options
    appended to the URL's own ``options``, e.g. a search_path) and in UTC (see ``_on_pg_source_connect``).
    """
    parsed = _normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _create_sqlite_engine(parsed, read_only=read_only)
    if not read_only:
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=_pg_connect_args(parsed))
    engine = sa.create_engine(
        with_session_options(parsed, SOURCE_SESSION_OPTIONS),
        pool_pre_ping=True,
        connect_args=_pg_connect_args(parsed),
    )
    event.listen(engine, "connect", _on_pg_source_connect)
    return engine


_SET_TIMEOUTS = sa.text(
    "SELECT set_config('lock_timeout', :t, true), set_config('statement_timeout', :t, true)"
)


def _pg_connect_args(url: URL) -> dict[str, int]:
    # SQLAlchemy lets connect_args override the URL's query: pass only what the URL leaves unset.
    return {k: v for k, v in PG_CONNECT_ARGS.items() if k not in url.query}


def with_session_options(url: URL, options: str, *, environ: Mapping[str, str] | None = None) -> URL:
    """``url`` with ``options`` (libpq ``-c name=value`` settings) after the ones it already has.

    Setting libpq's ``options`` replaces, not extends, what the URL's ``?options=`` (or, without
    one, the ``PGOPTIONS`` environment variable) asked for: a user's ``search_path`` would silently
    be lost. So they are merged; ours come last, so they win for a setting named twice.
    """
    given = url.query.get("options")
    parts = list(given) if isinstance(given, tuple) else [given] if given else []
    if not parts:
        env = os.environ if environ is None else environ
        parts = [env["PGOPTIONS"]] if env.get("PGOPTIONS") else []
    merged = " ".join([*(p.strip() for p in parts if p.strip()), options])
    return url.update_query_dict({"options": merged})


@contextmanager
def write_transaction(engine: Engine, *, timeout_ms: int | None = None) -> Iterator[Connection]:
    """A transaction that will write: ``BEGIN IMMEDIATE`` on SQLite, a normal one on PostgreSQL.

    Lock rows you read and then write with ``SELECT ... FOR UPDATE`` (see the module docstring).
    ``timeout_ms`` bounds how long the transaction waits for locks (SQLite's busy timeout for the
    write lock; PostgreSQL's ``lock_timeout`` and ``statement_timeout``): a caller with a latency
    budget (the ledger, seed 004 §5) gets a :class:`StorageError` instead of waiting 30 s.
    Driver errors become :class:`StorageError`. Under a dry run (:mod:`metric_platform.write_guard`)
    a persistent database refuses to open the transaction at all.
    """
    if not is_in_memory(engine):
        write_guard.check(f"a write transaction on {describe_url(engine)}")
    with _translated(engine, "write transaction"), engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True})
        sqlite = conn.dialect.name == "sqlite"
        if timeout_ms is not None and sqlite:
            _busy_timeout(conn, timeout_ms)
        try:
            with conn.begin():
                if timeout_ms is not None and not sqlite:  # one round trip for both settings
                    conn.execute(_SET_TIMEOUTS, {"t": str(int(timeout_ms))})
                yield conn
        finally:
            if timeout_ms is not None and sqlite:
                _busy_timeout(conn, BUSY_TIMEOUT_MS)


def _busy_timeout(conn: Connection, timeout_ms: int) -> None:
    # On the DB-API connection: a statement through SQLAlchemy would autobegin a transaction.
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")


def is_in_memory(engine: Engine) -> bool:
    """A SQLite database that lives only in this process (nothing it holds is ever persisted)."""
    database = engine.url.database or ""
    return engine.dialect.name == "sqlite" and (database in ("", ":memory:") or "mode=memory" in database)


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction (a consistent snapshot on SQLite WAL). Driver errors become StorageError."""
    with _translated(engine, "read transaction"), engine.connect() as conn, conn.begin():
        yield conn


def dialect_insert(conn: Connection, table: sa.Table) -> Any:
    # Both dialects' INSERT constructs share the on_conflict_* API; SQLAlchemy Core has no generic one.
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    msg = f"platform databases are SQLite or PostgreSQL, not {name}; change the URL"
    raise StorageError(msg)


def describe_url(engine: Engine) -> str:
    """The engine's URL with the password hidden, for error messages."""
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def _translated(engine: Engine, what: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        msg = (
            f"{what} on {describe_url(engine)} failed: {detail}. "
            "Check that the database is reachable, not locked by a stuck process, and migrated."
        )
        raise StorageError(msg) from exc


def _normalise_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        msg = f"{url!r} is not a valid SQLAlchemy URL; use e.g. sqlite:///path/to.db or postgresql://host/db"
        raise StorageError(msg) from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql", "postgres"):
        shown = parsed.render_as_string(hide_password=True)
        msg = f"{shown!r}: only SQLite and PostgreSQL URLs are supported"
        raise StorageError(msg)
    if parsed.drivername in ("postgresql", "postgres"):
        # SQLAlchemy does not know "postgres://" and would pick psycopg2 for a bare "postgresql://"
        # on older versions; the platform ships psycopg 3 only (ARCHITECTURE.md §7).
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _create_sqlite_engine(url: URL, *, read_only: bool) -> Engine:
    database = url.database or ""
    on_disk = database not in ("", ":memory:") and not database.startswith("file:")
    if on_disk and read_only:
        url = url.set(database=f"file:{Path(database).resolve()}?mode=ro", query={"uri": "true"})
    elif on_disk:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _on_sqlite_connect_read_only if read_only else _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # We emit BEGIN ourselves (below); pysqlite's implicit deferred BEGIN would race.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        # busy_timeout first, so the journal-mode switch waits instead of failing when several
        # processes open a fresh file at once.
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _ensure_wal(cursor)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _ensure_wal(cursor: Any) -> None:
    """Switch the file to WAL once. The switch needs an exclusive lock, and SQLite may answer
    "database is locked" at once instead of calling the busy handler (seen when another process
    was migrating a fresh file): a file already in WAL is left alone (reading the mode takes no
    such lock), and the switch itself is retried until the busy timeout."""
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _on_sqlite_connect_read_only(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _on_pg_source_connect(dbapi_conn: Any, _record: Any) -> None:
    # Sources read timestamptz in UTC: CAST(ts AS DATE), the day bucket, otherwise follows the
    # session's TimeZone (the role's or server's default, or PGTZ) while the Polars backend buckets
    # UTC days. A SET, not "-c TimeZone=UTC" in the options: libpq sends PGTZ as a startup
    # parameter of its own, which overrides the options.
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    try:
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
    finally:
        dbapi_conn.autocommit = autocommit


_SNAPSHOT_TRIES = 50


def _on_sqlite_begin(conn: Connection) -> None:
    write = bool(conn.get_execution_options().get(_WRITE_OPTION, False))
    if write:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    # In WAL mode a reader's first statement may get SQLITE_BUSY at once, without the busy
    # handler, while another connection rebuilds the WAL index (seen under 4-process load). Take
    # the read snapshot here, retrying: the transaction's later statements then cannot hit it.
    raw = conn.connection.dbapi_connection
    assert raw is not None
    for attempt in range(_SNAPSHOT_TRIES):
        raw.execute("BEGIN")
        try:
            raw.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return
        except sqlite3.OperationalError as exc:
            raw.execute("ROLLBACK")
            if "locked" not in str(exc) or attempt == _SNAPSHOT_TRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


# -- what a dry run may open ------------------------------------------------------------------
_SQLITE_MAGIC = b"SQLite format 3\x00"
_WAL_FORMAT = 2  # header bytes 18-19 (write/read format version): 1 = rollback journal, 2 = WAL


def readable_without_writing(url: str) -> bool:
    """Can a normal connection read ``url`` without creating or changing anything?

    PostgreSQL: yes. An on-disk SQLite file: only when it exists and is already in WAL mode,
    since connecting creates a missing file (and its directory) and switches the journal mode.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return True  # create_db_engine then reports the bad URL with its own message
    if parsed.get_backend_name() != "sqlite":
        return True
    path = _sqlite_file(parsed)
    return path is None or _is_wal_database(path)


def _sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names, or None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        name, _, options = database[len("file:") :].partition("?")
        if "mode=memory" in options or url.query.get("mode") == "memory":
            return None
        return Path(name)
    return Path(database)


def _is_wal_database(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            header = handle.read(20)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return False
    return len(header) == 20 and header.startswith(_SQLITE_MAGIC) and header[18] == _WAL_FORMAT


def memory_stand_in_url() -> str:
    """A fresh private in-memory SQLite database (a dry run's stand-in for a store it must not create)."""
    # A named shared-cache memory database: every pooled connection (and thread) of the engine
    # sees the same tables, unlike a plain ":memory:" database, which is private to one connection.
    name = f"file:mp_dry_run_{uuid.uuid4().hex}?mode=memory&cache=shared"
    return URL.create("sqlite", database=name, query={"uri": "true"}).render_as_string()
