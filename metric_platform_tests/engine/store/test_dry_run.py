"""The store under a dry run (seed 000 §6): every write path asks the write guard and skips.

Each test fails if the backstop (``write_guard.check``, called by ``db.write_transaction`` and the
Parquet writer) is even reached: a store that asks first never gets there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from metric_platform import write_guard
from metric_platform.backends.protocol import DateWindow
from metric_platform.db import create_db_engine
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.serving.buckets import buckets
from metric_platform.engine.serving.memo import Memo
from metric_platform.engine.store import EntryStore, EvictionUnit, in_flight
from metric_platform.engine.store.migrations_runner import downgrade, migrate
from metric_platform.engine.store.records import ByteTotals, Entry
from metric_platform.engine.store.schema import (
    engine_entries,
    engine_meta,
    engine_pending_deletions,
    engine_requests,
)
from metric_platform.errors import InvalidRequestError, StorageError, UnknownNameError
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.semantics.types import TimeGrain
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import CountingBackend, fixed_today
from metric_platform_tests.engine.store._support import days, frame_for, key, meta, slice_frame
from metric_platform_tests.pg_schema import fresh_pg_schema

_TABLES = (engine_entries, engine_pending_deletions, engine_meta, engine_requests)


def manifest_rows(url: str, ac_name: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the AC in every engine table, sorted, read through a separate connection."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table.name: sorted(
                    (tuple(row) for row in conn.execute(sa.select(table).where(table.c.ac_name == ac_name))),
                    key=repr,
                )
                for table in _TABLES
            }
    finally:
        engine.dispose()


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: relative path -> (size, mtime in ns)."""
    if not root.exists():
        return {}
    return {
        path.relative_to(root).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _everything(_totals: ByteTotals, units: list[EvictionUnit]) -> list[EvictionUnit]:
    return list(units)


def _populate(store: EntryStore, ac_name: str) -> tuple[Entry, Entry, list[Entry]]:
    """A whole entry, a pinned one and a week of slices, accessed once, with one meta value."""
    whole = store.publish(key(ac_name), frame_for(key(ac_name)), meta())
    pinned_key = key(ac_name, "pinned_family")
    pinned = store.publish(pinned_key, frame_for(pinned_key), meta(pinned=True))
    base = key(ac_name, "sliced", ("region", "day"))
    week = days(0, 7)
    slices = store.publish_slices(
        base, slice_frame(week, rows=2), slice_column="day", slices=week, meta=meta()
    )
    store.record_access([whole, *slices], request=base)
    store.set_meta(ac_name, "note", "v1")
    return whole, pinned, slices


@pytest.mark.parametrize("opened", ["before", "inside"])
def test_every_write_path_is_skipped_and_recorded_under_a_dry_run(
    *,
    make_store: Callable[..., EntryStore],
    manifest_url: str,
    data_dir: Path,
    ac_name: str,
    no_backstop: list[str],
    opened: str,
) -> None:
    real = make_store()
    whole, pinned, slices = _populate(real, ac_name)
    base = slices[0].key.base
    rows_before, files_before = manifest_rows(manifest_url, ac_name), files_under(data_dir)
    new_key = key(ac_name, "new_family")
    with write_guard.dry_run() as record:
        assert record is not None
        # A store opened inside the dry run reads the real manifest (it exists and is at head).
        store = real if opened == "before" else make_store()
        assert [e.key for e in store.list_entries(ac_name)] == [e.key for e in real.list_entries(ac_name)]
        preview = store.publish(new_key, frame_for(new_key), meta())
        assert (preview.version, preview.entry_id, preview.path.exists()) == (0, 0, False)
        assert store.publish_many([(new_key, frame_for(new_key), meta())]) == []
        week = days(0, 7)
        frame = slice_frame(week, rows=1)
        assert store.publish_slices(base, frame, slice_column="day", slices=week, meta=meta()) == []
        store.record_access([whole], request=base)
        assert store.pin_entries([whole, *slices]) == 0
        store.set_pinned(whole.key, True)
        store.set_meta(ac_name, "note", "v2")
        assert store.delete(whole.key) is True  # what a real delete would answer
        assert store.delete(new_key) is False
        assert store.drop_unreadable([whole]) == 0
        assert store.sweep(ac_name=ac_name).files_deleted == 0
        chosen, would = store.evict(ac_name, _everything)
        assert would.rows_deleted == len(slices) + 1  # every unpinned row, read only
        assert store.evict_units(chosen).rows_deleted == len(slices) + 1
        assert store.prune_requests(ac_name, before=date(2100, 1, 1)) == 0
        in_flight.register(store._engine, {"x/y.parquet": ac_name}, store.now())
        in_flight.release(store._engine, ["x/y.parquet"])
        # Validation still runs: a dry run answers as a real run would.
        with pytest.raises(InvalidRequestError, match="pinned"):
            store.delete(pinned.key)
        with pytest.raises(UnknownNameError, match="publish it first"):
            store.set_pinned(new_key, True)
        with pytest.raises(InvalidRequestError, match="DataFrame"):
            store.publish_many([(new_key, frame.lazy(), meta())])  # type: ignore[list-item]
    assert no_backstop == []
    assert record.counts == {
        "engine.publish": 1 + 1 + 7,
        "engine.record_access": 1,
        "engine.pin": (1 + 7) + 1,  # the unpinned entries pin_entries got, then set_pinned
        "engine.meta": 1,
        "engine.delete": 1,
        "engine.drop_unreadable": 1,
        "engine.sweep": 1,
        "engine.evict": 1 + 2,
        "engine.prune_requests": 1,
        "engine.in_flight": 2,
    }
    assert store.write_count == (3 if opened == "before" else 0)  # the real run's publishes only
    assert manifest_rows(manifest_url, ac_name) == rows_before
    assert files_under(data_dir) == files_before


def test_a_missing_sqlite_manifest_is_neither_created_nor_migrated_under_a_dry_run(
    tmp_path: Path, no_backstop: list[str]
) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'engine' / 'manifest.sqlite'}"
    k = key("ac")
    with write_guard.dry_run() as record, EntryStore(url, home / "engine" / "data") as store:
        assert store.list_entries("ac") == []
        assert store.publish_many([(k, frame_for(k), meta())]) == []
        assert store.get(k) is None  # the stand-in holds nothing, not even a skipped write
        store.record_access([], request=k)
        assert store.sweep().bytes_freed == 0
    assert no_backstop == []
    assert record is not None
    assert record.counts == {"engine.publish": 1, "engine.record_access": 1, "engine.sweep": 1}
    assert not home.exists()


def test_a_manifest_not_at_head_is_left_alone_under_a_dry_run(tmp_path: Path, no_backstop: list[str]) -> None:
    path = tmp_path / "manifest.sqlite"
    url = f"sqlite:///{path}"
    engine = create_db_engine(url)
    migrate(engine)
    downgrade(engine, "base")  # a WAL file without the engine tables: an older installation
    engine.dispose()
    before = files_under(tmp_path)
    with write_guard.dry_run(), EntryStore(url, tmp_path / "data") as store:
        assert store.list_entries("ac") == []
    assert no_backstop == []
    assert files_under(tmp_path) == before


@pytest.mark.postgres
def test_a_postgres_database_without_the_engine_tables_gets_none_under_a_dry_run(
    pg_url: str, tmp_path: Path, no_backstop: list[str]
) -> None:
    with fresh_pg_schema(pg_url) as url:
        # Only the new, empty schema is visible: a database the engine never migrated.
        with write_guard.dry_run(), EntryStore(url, tmp_path) as store:
            assert store.list_entries("ac") == []
            assert store.publish_many([(key("ac"), frame_for(key("ac")), meta())]) == []
        engine = create_db_engine(url)
        try:
            assert sa.inspect(engine).get_table_names() == []
        finally:
            engine.dispose()
    assert no_backstop == []


def test_a_sqlite_file_not_in_wal_mode_is_not_switched_under_a_dry_run(
    tmp_path: Path, no_backstop: list[str]
) -> None:
    path = tmp_path / "manifest.sqlite"
    with sqlite3.connect(path) as conn:  # a rollback-journal file: connecting through db.py would switch it
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
    conn.close()
    before = path.read_bytes()
    with write_guard.dry_run(), EntryStore(f"sqlite:///{path}", tmp_path / "data") as store:
        assert store.list_entries("ac") == []
    assert no_backstop == []
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.sqlite"]


def test_a_store_standing_in_for_a_missing_manifest_refuses_to_write_after_the_dry_run(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    with write_guard.dry_run():
        store = EntryStore(f"sqlite:///{home / 'manifest.sqlite'}", home / "data")
    k = key("ac")
    try:
        with pytest.raises(StorageError, match="open the store again outside the dry run"):
            store.publish(k, frame_for(k), meta())
        with pytest.raises(StorageError, match="in-memory manifest"):
            store.set_meta("ac", "k", "v")
        with pytest.raises(StorageError, match="in-memory manifest"):
            store.delete(k)
        with pytest.raises(StorageError, match="in-memory manifest"):
            store.set_pinned(k, True)
    finally:
        store.close()
    assert not home.exists()


def test_a_real_store_still_writes_after_a_dry_run_on_the_same_object(
    make_store: Callable[..., EntryStore], ac_name: str
) -> None:
    store = make_store()
    k = key(ac_name)
    with write_guard.dry_run():
        assert store.publish_many([(k, frame_for(k), meta())]) == []
    (entry,) = store.publish_many([(k, frame_for(k), meta())])
    assert entry.version == 1
    assert store.get(k) == entry


def test_a_dry_run_serve_computes_the_result_but_memoizes_nothing(
    ac: AnalyticalContext, settings: Settings, backend: CountingBackend, no_backstop: list[str]
) -> None:
    window = DateWindow(date(2026, 11, 1), date(2026, 11, 7))
    anchor = ("store", "day")
    with MetricEngine.open(ac, settings, today=fixed_today) as real:
        expected = real.serve_metric("revenue", anchor, backend=backend, window=window).frame.collect()
    fresh = Settings(home=settings.home.parent / "fresh-home", engine_manifest_url=None, engine_data_dir=None)
    with write_guard.dry_run() as record, MetricEngine.open(ac, fresh, today=fixed_today) as dry:
        served = dry.serve_metric("revenue", anchor, backend=backend, window=window, pin=True)
        frame = served.frame.collect()
        full = [b for b in buckets(TimeGrain.DAY, window) if b.full]
        grain = ac.canonical_grain(anchor)
        outcome = dry._metric.memo.memoize(ac.family("revenue"), grain, frame, full, "src", pin=True)
        assert dry.entries() == []
    assert outcome is Memo.SKIPPED
    assert not served.provenance.memoized
    assert no_backstop == []
    assert record is not None and record.counts["engine.publish"] == 2 * len(full)
    assert frame.sort(list(anchor)).equals(expected.sort(list(anchor)))
    assert not fresh.home.exists()
