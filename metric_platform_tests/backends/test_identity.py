"""``source_identity`` says where a backend reads (never a secret); ``table_stamp`` changes when one
table's rows do, and only then (SQLite: when any table of the file does)."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from metric_platform.backends.identity import fingerprint, postgres_identity, table_fingerprint
from metric_platform.backends.polars_backend import PolarsBackend
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.backends.sql_backend import SqlBackend
from metric_platform.backends.sql_load import load_frames
from metric_platform.errors import SourceError
from metric_platform.sample_data import write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform_tests.backends.datasets import RETAIL_AC, edge_frames

# PostgreSQL's table counters reach pg_stat_all_tables when the writer flushes them: at once when
# it disconnects (as the writers here do), else up to ~10 s later (identity.postgres_stamp).
STATS_LAG_SECONDS = 15.0


def retail(directory: Path) -> AnalyticalContext:
    return load_ac(RETAIL_AC, source_path=directory)


def rewrite_stores(directory: Path) -> None:
    stores = edge_frames()["stores"]
    write_parquet({"stores": stores.with_columns(pl.col("region").str.to_uppercase())}, directory)


def wait_for_change(stamp: Callable[[], str], before: str) -> str:
    deadline = time.monotonic() + STATS_LAG_SECONDS
    while (now := stamp()) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    return now


def settled(stamp: Callable[[], str]) -> str:
    """The stamp once a disconnected writer's counters have landed (unchanged for 0.3 s)."""
    last = stamp()
    while True:
        time.sleep(0.3)
        if (now := stamp()) == last:
            return now
        last = now


# -- Parquet ----------------------------------------------------------------------------------------
def test_parquet_identity_is_the_resolved_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_parquet(edge_frames(), tmp_path / "a")
    write_parquet(edge_frames(), tmp_path / "b")
    ac = retail(tmp_path / "a")
    monkeypatch.chdir(tmp_path)
    same = PolarsBackend(ac, root=Path("a"))
    assert PolarsBackend(ac).source_identity() == same.source_identity() == f"parquet:{tmp_path / 'a'}"
    assert PolarsBackend(ac, root=tmp_path / "b").source_identity() != same.source_identity()
    assert isinstance(same, DataAPIBackend)


def test_parquet_stamp_follows_its_own_table(tmp_path: Path) -> None:
    write_parquet(edge_frames(), tmp_path)
    backend = PolarsBackend(retail(tmp_path))
    before = {s: backend.table_stamp(s) for s in ("transactions", "stores", "campaigns")}
    assert {s: backend.table_stamp(s) for s in before} == before  # nothing changed: same stamps
    rewrite_stores(tmp_path)
    after = {s: backend.table_stamp(s) for s in before}
    assert after["stores"] != before["stores"]
    assert after["transactions"] == before["transactions"]
    assert after["campaigns"] == before["campaigns"]


def test_parquet_directory_stamp_sees_a_new_part(tmp_path: Path) -> None:
    frames = edge_frames()
    write_parquet({"stores": frames["stores"], "campaigns": frames["campaigns"]}, tmp_path)
    parts = tmp_path / "transactions"
    parts.mkdir()
    frames["transactions"].head(4).write_parquet(parts / "part-0.parquet")
    backend = PolarsBackend(retail(tmp_path))
    before = backend.table_stamp("transactions")
    frames["transactions"].slice(4).write_parquet(parts / "part-1.parquet")
    assert backend.table_stamp("transactions") != before


def test_parquet_stamp_of_a_missing_table(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"schema 'stores': no Parquet source for table 'stores'"):
        PolarsBackend(retail(tmp_path)).table_stamp("stores")


# -- SQLite -----------------------------------------------------------------------------------------
def test_sqlite_identity_and_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_frames(f"sqlite:///{tmp_path / 'src.db'}", edge_frames())
    ac = retail(tmp_path)
    monkeypatch.chdir(tmp_path)
    backend = SqlBackend(ac, "sqlite:///src.db")
    try:
        assert backend.source_identity() == f"sqlite:{tmp_path / 'src.db'}"
        before = backend.table_stamp("stores")
        assert backend.table_stamp("stores") == before
        with sqlite3.connect(tmp_path / "src.db") as raw:
            raw.execute("UPDATE stores SET region = 'west' WHERE store_id = 'S1'")
        assert backend.table_stamp("stores") != before
    finally:
        backend.close()


def test_sqlite_stamp_sees_a_write_still_in_the_wal(tmp_path: Path) -> None:
    load_frames(f"sqlite:///{tmp_path / 'src.db'}", edge_frames())
    writer = sqlite3.connect(tmp_path / "src.db")
    try:
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # keep the write out of the main file
        backend = SqlBackend(retail(tmp_path), f"sqlite:///{tmp_path / 'src.db'}")
        before = backend.table_stamp("stores")
        main_file = (tmp_path / "src.db").stat()
        writer.execute("UPDATE stores SET region = 'west' WHERE store_id = 'S1'")
        writer.commit()
        assert (tmp_path / "src.db").stat().st_mtime_ns == main_file.st_mtime_ns  # only the WAL moved
        assert backend.table_stamp("stores") != before
        backend.close()
    finally:
        writer.close()


# -- PostgreSQL -------------------------------------------------------------------------------------
def test_postgres_identity_has_no_password() -> None:
    url = make_url("postgresql+psycopg://alice:s3cret@db.example:6543/sales?options=-c%20search_path%3Dq")
    identity = postgres_identity(url)
    assert identity == "postgresql://alice@db.example:6543/sales?options=-c search_path=q"
    assert "s3cret" not in identity
    assert postgres_identity(make_url("postgresql://h/db")) == "postgresql://h:5432/db"


@pytest.fixture
def pg_table(pg_url: str) -> Iterator[tuple[SqlBackend, sa.Engine, str]]:
    """A backend whose ``stores`` schema reads a fresh mixed-case table, with a writer engine."""
    table = f"Stamp_{uuid.uuid4().hex[:8]}"
    load_frames(pg_url, {table: edge_frames()["stores"]})
    base = retail(Path("."))
    ac = replace(base, schemas={**base.schemas, "stores": replace(base.schemas["stores"], table=table)})
    backend = SqlBackend(ac, pg_url)
    # NullPool: each write's session ends at once, and with it the wait for its counters
    writer = sa.create_engine(make_url(pg_url), poolclass=NullPool)
    yield backend, writer, table
    backend.close()
    writer.dispose()


@pytest.mark.postgres
def test_postgres_identity_of_the_backend(pg_url: str, pg_table: tuple[SqlBackend, sa.Engine, str]) -> None:
    backend, _, _ = pg_table
    url = make_url(pg_url)
    assert backend.source_identity() == f"postgresql://{url.username}@{url.host}:{url.port}/{url.database}"


@pytest.mark.postgres
@pytest.mark.parametrize(
    "change",
    [
        "INSERT INTO {t} VALUES ('S7', 'Seven', 'west', DATE '2021-01-01')",
        "UPDATE {t} SET region = 'west' WHERE store_id = 'S1'",
        "DELETE FROM {t} WHERE store_id = 'S9'",
        "TRUNCATE {t}",
    ],
    ids=["insert", "update", "delete", "truncate"],
)
def test_postgres_stamp_sees_each_kind_of_write(
    pg_table: tuple[SqlBackend, sa.Engine, str], change: str
) -> None:
    backend, writer, table = pg_table
    before = settled(lambda: backend.table_stamp("stores"))
    assert backend.table_stamp("stores") == before
    with writer.begin() as conn:
        conn.exec_driver_sql(change.format(t=f'"{table}"'))
    assert wait_for_change(lambda: backend.table_stamp("stores"), before) != before


@pytest.mark.postgres
def test_postgres_stamp_of_a_view_and_a_missing_table(pg_table: tuple[SqlBackend, sa.Engine, str]) -> None:
    backend, writer, table = pg_table
    view = f"v_{table.lower()}"
    with writer.begin() as conn:
        conn.exec_driver_sql(f'CREATE VIEW {view} AS SELECT * FROM "{table}"')
    ac = backend.ac
    on_view = replace(ac, schemas={**ac.schemas, "stores": replace(ac.schemas["stores"], table=view)})
    viewer = SqlBackend(on_view, writer)
    # no cheap change signal: never the same twice, so nothing computed from it is reused
    assert viewer.table_stamp("stores") != viewer.table_stamp("stores")
    missing = replace(ac, schemas={**ac.schemas, "stores": replace(ac.schemas["stores"], table="nope")})
    with pytest.raises(SourceError, match=r"schema 'stores': table 'nope' does not exist"):
        SqlBackend(missing, writer).table_stamp("stores")


def test_fingerprints_fit_the_manifest_column(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 12)
    write_parquet(edge_frames(), deep)
    backend = PolarsBackend(retail(deep))
    assert len(backend.source_identity()) > 128
    assert len(table_fingerprint(backend, "stores")) == len(fingerprint("x")) == 64
    assert table_fingerprint(backend, "stores") != fingerprint(backend.source_identity())
    assert os.path.isdir(deep)
