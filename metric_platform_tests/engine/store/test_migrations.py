"""Manifest migrations: up/down/up on both dialects, agreement with schema.py, backfills, concurrency."""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import metric_platform
from metric_platform.db import create_db_engine, write_transaction
from metric_platform.engine.store import EntryStore
from metric_platform.engine.store.migrations_runner import (
    MIGRATIONS_DIR,
    VERSION_TABLE,
    current_revision,
    downgrade,
    head_revision,
    migrate,
    upgrade,
)
from metric_platform.engine.store.schema import engine_entries, metadata
from metric_platform.errors import StorageError
from metric_platform_tests.engine.store._support import (
    days,
    frame_for,
    key,
    meta,
    run_spawned,
    slice_base,
    slice_frame,
)
from metric_platform_tests.pg_schema import fresh_pg_schema

ENGINE_TABLES = {"engine_entries", "engine_pending_deletions", "engine_meta", "engine_requests"}
REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new PostgreSQL schema (so other tests' tables stay)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite'}"
        return
    with fresh_pg_schema(str(request.getfixturevalue("pg_url"))) as url:
        yield url


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) & (ENGINE_TABLES | {VERSION_TABLE})


def _schema_diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return list(compare_metadata(context, metadata))


def test_upgrade_downgrade_upgrade_and_agreement_with_schema_module(fresh_url: str) -> None:
    engine = create_db_engine(fresh_url)
    try:
        assert current_revision(engine) is None
        migrate(engine)
        assert current_revision(engine) == head_revision()
        assert _tables(engine) == ENGINE_TABLES | {VERSION_TABLE}
        assert _schema_diff(engine) == [], "schema.py and the migrations disagree"

        downgrade(engine)
        assert current_revision(engine) is None
        assert _tables(engine) == {VERSION_TABLE}

        migrate(engine)
        migrate(engine)  # idempotent
        assert current_revision(engine) == head_revision()
        assert _schema_diff(engine) == []
    finally:
        engine.dispose()


def _entry_columns(engine: sa.Engine) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns("engine_entries")}


def _count_entries(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM engine_entries")).scalar_one())


def test_0001_to_0002_keeps_entries_and_downgrade_forgets_only_shared_slices(
    fresh_url: str, tmp_path: Path
) -> None:
    engine = create_db_engine(fresh_url)
    try:
        upgrade(engine, "0001")
        assert current_revision(engine) == "0001"
        assert {"slice_column", "file_slice_count"}.isdisjoint(_entry_columns(engine))
        with write_transaction(engine) as conn:  # a row as code at 0001 wrote it
            conn.execute(
                sa.text(
                    "INSERT INTO engine_entries (ac_name, domain, dataset_id, anchor_signature, slice_key, "
                    "version, parquet_path, family_fingerprint, source_schemas, row_count, byte_size, "
                    "materialized_at, last_access_at) VALUES ('old', 'METRIC', 'revenue', 'region', '', 1, "
                    "'old/f.parquet', 'fp-1', '[]', 3, 10, :now, :now)"
                ),
                {"now": "2026-01-01 00:00:00"},
            )

        upgrade(engine, "0002")
        assert {"slice_column", "file_slice_count"} <= _entry_columns(engine)
        ac = f"m{uuid.uuid4().hex[:8]}"
        with EntryStore(fresh_url, tmp_path / "data") as store:
            old = store.get(key("old"))
            assert old is not None and (old.row_count, old.slice_column, old.file_slice_count) == (
                3,
                None,
                None,
            )
            two = days(0, 2)
            store.publish_slices(
                slice_base(ac), slice_frame(two, rows=1), slice_column="day", slices=two, meta=meta()
            )
            single = store.publish(key(ac, "single", slice_key="2026-01-01"), frame_for(key(ac)), meta())
        assert _count_entries(engine) == 4

        downgrade(engine, "0001")
        assert current_revision(engine) == "0001"
        assert {"slice_column", "file_slice_count"}.isdisjoint(_entry_columns(engine))
        with engine.connect() as conn:
            kept = conn.execute(
                sa.text("SELECT parquet_path FROM engine_entries ORDER BY parquet_path")
            ).scalars()
            assert sorted(kept) == sorted(
                ["old/f.parquet", single.path.relative_to(tmp_path / "data").as_posix()]
            )

        migrate(engine)
        assert current_revision(engine) == head_revision() and _schema_diff(engine) == []
        assert _count_entries(engine) == 2
    finally:
        engine.dispose()


# (dataset, slice key, stability cutoff) of rows written at 0002, and the (slice_end, provisional)
# that 0003 must backfill: a slice's end is its day (for a coarse bucket, an approximation).
_CUTOFF = date(2026, 1, 5)
_AT_0002 = [
    ("whole", "", _CUTOFF, None, False),
    ("sliced", "2026-01-03", _CUTOFF, date(2026, 1, 3), False),
    ("sliced", "2026-01-05", _CUTOFF, date(2026, 1, 5), False),  # on the cutoff: stable
    ("sliced", "2026-01-10", _CUTOFF, date(2026, 1, 10), True),
    ("unstable", "2026-01-10", None, date(2026, 1, 10), False),  # no stability block
]


def _insert_rows_as_0002_wrote_them(engine: sa.Engine, ac: str) -> None:
    now = datetime(2026, 1, 20, tzinfo=UTC)
    values = [
        {
            "ac_name": ac,
            "domain": "METRIC",
            "dataset_id": dataset,
            "anchor_signature": "region",
            "slice_key": slice_key,
            "version": 1,
            "parquet_path": f"{ac}/{dataset}/{slice_key or '_all'}.parquet",
            "family_fingerprint": "fp-1",
            "source_schemas": "[]",
            "row_count": 1,
            "byte_size": 10,
            "materialized_at": now,
            "stability_cutoff": cutoff,
            "last_access_at": now,
        }
        for dataset, slice_key, cutoff, _, _ in _AT_0002
    ]
    with write_transaction(engine) as conn:
        conn.execute(sa.insert(engine_entries), values)  # only the columns 0002 has


def test_0002_to_0003_backfills_slice_ends_and_provisional_flags(fresh_url: str, tmp_path: Path) -> None:
    engine = create_db_engine(fresh_url)
    ac = f"m{uuid.uuid4().hex[:8]}"
    expected = [(dataset, key_, end, flag) for dataset, key_, _, end, flag in _AT_0002]
    try:
        upgrade(engine, "0002")
        assert {"slice_end", "provisional"}.isdisjoint(_entry_columns(engine))
        _insert_rows_as_0002_wrote_them(engine, ac)

        upgrade(engine, "0003")
        assert current_revision(engine) == "0003"
        with EntryStore(fresh_url, tmp_path / "data") as store:
            got = [
                (e.key.dataset_id, e.key.slice_key, e.slice_end, e.provisional)
                for e in store.list_entries(ac)
            ]
            assert sorted(got, key=str) == sorted(expected, key=str)
            stale = store.list_provisional(ac, ended_by=date(2026, 1, 10))
            assert [(e.key.dataset_id, e.key.slice_key) for e in stale] == [("sliced", "2026-01-10")]
            store.record_access([], request=stale[0].key.base)

        downgrade(engine, "0002")
        assert {"slice_end", "provisional"}.isdisjoint(_entry_columns(engine))
        assert "engine_requests" not in _tables(engine) and _count_entries(engine) == len(_AT_0002)

        migrate(engine)
        assert current_revision(engine) == head_revision() and _schema_diff(engine) == []
        with EntryStore(fresh_url, tmp_path / "data") as store:
            got = [
                (e.key.dataset_id, e.key.slice_key, e.slice_end, e.provisional)
                for e in store.list_entries(ac)
            ]
            assert sorted(got, key=str) == sorted(expected, key=str), "backfilled again"
    finally:
        engine.dispose()


def _migrate_worker(url: str) -> None:
    engine = create_db_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()


def test_several_processes_migrating_a_fresh_database_at_once(fresh_url: str) -> None:
    assert run_spawned(_migrate_worker, [(fresh_url,)] * 4) == [0] * 4
    engine = create_db_engine(fresh_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar_one() == 1
    finally:
        engine.dispose()


def test_database_from_a_newer_release_is_a_storage_error(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'newer.sqlite'}")
    try:
        migrate(engine)
        with write_transaction(engine) as conn:
            conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffff9999'"))
        with pytest.raises(StorageError, match="newer metric_platform") as info:
            migrate(engine)
        assert "ffff9999" in str(info.value)
    finally:
        engine.dispose()


def test_every_migrations_file_is_covered_by_the_package_data_globs() -> None:
    """Non-package files ship in the wheel only through pyproject's package-data globs."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["metric_platform"]
    package_root = Path(metric_platform.__file__).parent
    shipped = {path for pattern in globs for path in package_root.glob(pattern)}
    needed = {
        path
        for path in MIGRATIONS_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".mako", ".ini"}
    }
    assert MIGRATIONS_DIR / "env.py" in needed and any(p.parent.name == "versions" for p in needed)
    assert needed <= shipped, f"not shipped: {sorted(str(p) for p in needed - shipped)}"
