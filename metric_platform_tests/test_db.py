"""Tests for the shared database helper: URL mapping, SQLite pragmas, and no lost updates."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from metric_platform.db import (
    SOURCE_SESSION_OPTIONS,
    create_db_engine,
    read_transaction,
    with_session_options,
    write_transaction,
)
from metric_platform.errors import StorageError

WORKERS = 4
INCREMENTS = 100

_meta = sa.MetaData()
_counters = sa.Table(
    "db_test_counters",
    _meta,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)


def _increment_worker(url: str, name: str, times: int) -> None:
    """Read-then-write ``times`` increments, each in its own write transaction (the documented pattern)."""
    engine = create_db_engine(url)
    try:
        for _ in range(times):
            with write_transaction(engine) as conn:
                query = sa.select(_counters.c.n).where(_counters.c.name == name).with_for_update()
                current = conn.execute(query).scalar_one()
                conn.execute(sa.update(_counters).where(_counters.c.name == name).values(n=current + 1))
    finally:
        engine.dispose()


def _run_increments(url: str) -> int:
    name = f"c_{uuid.uuid4().hex[:8]}"
    engine = create_db_engine(url)
    try:
        _meta.create_all(engine)
        with write_transaction(engine) as conn:
            conn.execute(sa.insert(_counters).values(name=name, n=0))
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_increment_worker, args=(url, name, INCREMENTS)) for _ in range(WORKERS)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=120)
        assert [proc.exitcode for proc in procs] == [0] * WORKERS
        with read_transaction(engine) as conn:
            return int(conn.execute(sa.select(_counters.c.n).where(_counters.c.name == name)).scalar_one())
    finally:
        engine.dispose()


def test_sqlite_read_then_write_across_processes_loses_no_update(tmp_path: Path) -> None:
    assert _run_increments(f"sqlite:///{tmp_path / 'counter.sqlite'}") == WORKERS * INCREMENTS


@pytest.mark.postgres
def test_postgres_read_then_write_across_processes_loses_no_update(pg_url: str) -> None:
    assert _run_increments(pg_url) == WORKERS * INCREMENTS


def test_sqlite_file_gets_wal_and_pragmas_and_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "x.sqlite"
    engine = create_db_engine(f"sqlite:///{path}")
    try:
        with read_transaction(engine) as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30_000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
        assert path.exists()
    finally:
        engine.dispose()


def test_sqlite_write_transaction_takes_the_write_lock_at_begin(tmp_path: Path) -> None:
    """A second writer must block at BEGIN, not later; with a short timeout it fails as StorageError."""
    url = f"sqlite:///{tmp_path / 'lock.sqlite'}"
    engine = create_db_engine(url)
    other = sa.create_engine(url, connect_args={"timeout": 0.05})
    try:
        _meta.create_all(engine)
        # The first transaction has not written anything yet, so only BEGIN IMMEDIATE holds the lock.
        with (
            write_transaction(engine),
            other.connect() as raw,
            pytest.raises(sa.exc.OperationalError, match="locked"),
        ):
            raw.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        other.dispose()
        engine.dispose()


def test_sqlite_read_transaction_does_not_block_writers(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'r.sqlite'}")
    try:
        _meta.create_all(engine)
        with read_transaction(engine) as reader:
            reader.execute(sa.select(_counters)).all()
            with write_transaction(engine) as writer:
                writer.execute(sa.insert(_counters).values(name="a", n=1))
    finally:
        engine.dispose()


def test_driver_errors_become_storage_error_with_cause(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'e.sqlite'}")
    try:
        with (
            pytest.raises(StorageError, match="write transaction on sqlite") as info,
            write_transaction(engine) as conn,
        ):
            conn.exec_driver_sql("SELECT * FROM no_such_table")
        assert isinstance(info.value.__cause__, sa.exc.OperationalError)
        with pytest.raises(StorageError, match="read transaction") as info, read_transaction(engine) as conn:
            conn.exec_driver_sql("SELECT * FROM no_such_table")
        assert isinstance(info.value.__cause__, sa.exc.DBAPIError)
    finally:
        engine.dispose()


def test_unreachable_postgres_becomes_storage_error_without_password() -> None:
    engine = create_db_engine("postgres://user:s3cret@127.0.0.1:1/nowhere?connect_timeout=1")
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        with pytest.raises(StorageError, match="read transaction") as info, read_transaction(engine):
            pass
        assert "s3cret" not in str(info.value)
    finally:
        engine.dispose()


def test_postgresql_scheme_maps_to_psycopg3() -> None:
    engine = create_db_engine("postgresql://u@localhost/db")
    assert engine.url.drivername == "postgresql+psycopg"
    assert engine.pool._pre_ping
    engine.dispose()


@pytest.mark.postgres
def test_postgres_transactions_commit_and_roll_back(pg_url: str) -> None:
    engine = create_db_engine(pg_url)
    name = f"c_{uuid.uuid4().hex[:8]}"
    try:
        _meta.create_all(engine)
        with pytest.raises(RuntimeError), write_transaction(engine) as conn:
            conn.execute(sa.insert(_counters).values(name=name, n=1))
            raise RuntimeError("boom")
        with write_transaction(engine) as conn:
            conn.execute(sa.insert(_counters).values(name=name, n=2))
        with read_transaction(engine) as conn:
            assert conn.execute(sa.select(_counters.c.n).where(_counters.c.name == name)).scalar_one() == 2
    finally:
        engine.dispose()


def test_a_read_only_sqlite_engine_neither_writes_nor_switches_the_journal_mode(tmp_path: Path) -> None:
    import sqlite3

    source = tmp_path / "source.db"
    with sqlite3.connect(source) as raw:
        raw.execute("CREATE TABLE t (x INTEGER)")
        raw.execute("INSERT INTO t VALUES (1)")
    engine = create_db_engine(f"sqlite:///{source}", read_only=True)
    try:
        with read_transaction(engine) as conn:
            assert conn.execute(sa.text("SELECT x FROM t")).scalars().all() == [1]
        with pytest.raises(StorageError, match="readonly"), write_transaction(engine) as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (2)"))
    finally:
        engine.dispose()
    with sqlite3.connect(source) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert raw.execute("SELECT count(*) FROM t").fetchone()[0] == 1


def test_read_only_options_are_appended_to_the_url_options() -> None:
    url = make_url("postgresql+psycopg://u:pw@h/db?options=-c%20search_path%3Dsales")
    merged = with_session_options(url, SOURCE_SESSION_OPTIONS, environ={})
    assert merged.query["options"] == f"-c search_path=sales {SOURCE_SESSION_OPTIONS}"
    # without URL options, PGOPTIONS is what libpq would have used: kept too
    bare = make_url("postgresql+psycopg://u@h/db")
    from_env = with_session_options(bare, SOURCE_SESSION_OPTIONS, environ={"PGOPTIONS": "-c search_path=x"})
    assert from_env.query["options"] == f"-c search_path=x {SOURCE_SESSION_OPTIONS}"
    assert with_session_options(bare, SOURCE_SESSION_OPTIONS, environ={}).query["options"] == (
        SOURCE_SESSION_OPTIONS
    )
    engine = create_db_engine("postgresql://u@h/db?options=-c%20search_path%3Dsales", read_only=True)
    try:
        assert engine.url.query["options"] == f"-c search_path=sales {SOURCE_SESSION_OPTIONS}"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_read_only_session_keeps_the_users_options_and_reads_in_utc(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PGTZ is sent by libpq as a startup parameter of its own, which would override "-c TimeZone"
    monkeypatch.setenv("PGTZ", "Asia/Tokyo")
    url = make_url(pg_url).update_query_dict({"options": "-c search_path=mp_elsewhere,public"})
    engine = create_db_engine(url.render_as_string(hide_password=False), read_only=True)
    try:
        with read_transaction(engine) as conn:
            assert conn.exec_driver_sql("SHOW search_path").scalar_one() == "mp_elsewhere,public"
            assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar_one() == "on"
            assert conn.exec_driver_sql("SHOW TimeZone").scalar_one() == "UTC"
    finally:
        engine.dispose()
    writable = create_db_engine(pg_url)
    try:
        with read_transaction(writable) as conn:  # only sources are forced to UTC
            assert conn.exec_driver_sql("SHOW TimeZone").scalar_one() == "Asia/Tokyo"
    finally:
        writable.dispose()
