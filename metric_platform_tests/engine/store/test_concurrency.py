"""The store across real processes ("spawn"): a killed publisher, and concurrent publishers of one key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from polars.testing import assert_frame_equal

from metric_platform.engine.store import EntryStore, SweepReport
from metric_platform.engine.store.in_flight import IN_FLIGHT_MAX_AGE
from metric_platform.engine.store.schema import engine_entries, engine_pending_deletions
from metric_platform_tests.engine.store._support import (
    CRASH_EXIT_CODE,
    concurrent_keys,
    crash_publish_worker,
    day_rows,
    days,
    frame_for,
    key,
    meta,
    publish_and_read_worker,
    publish_slices_worker,
    run_spawned,
    slice_base,
)
from metric_platform_tests.engine.store.conftest import FakeClock
from metric_platform_tests.engine.store.test_entry_store import PAST_ORPHAN_AGE

WORKERS = 4
ROUNDS = 2


def test_publisher_killed_before_manifest_commit_leaves_only_a_registered_file_the_sweep_removes(
    manifest_url: str, data_dir: Path, ac_name: str, make_store: Callable[..., EntryStore], clock: FakeClock
) -> None:
    assert run_spawned(crash_publish_worker, [(manifest_url, str(data_dir), ac_name)]) == [CRASH_EXIT_CODE]

    store = make_store()
    k = key(ac_name)
    assert store.get(k) is None and store.list_entries(ac_name) == []
    leftovers = list((data_dir / ac_name).rglob("*.parquet"))
    assert len(leftovers) == 1, "the file was written and renamed before the crash"

    entry = store.publish(k, frame_for(k), meta())
    assert entry.version == 1 and entry.meta.family_fingerprint == "fp-1"
    clock.advance(PAST_ORPHAN_AGE)
    assert store.sweep(ac_name=ac_name) == SweepReport(0, 0, 0), "registered: it may still be in flight"
    clock.advance(IN_FLIGHT_MAX_AGE.total_seconds())
    assert store.sweep(ac_name=ac_name).files_deleted == 1
    assert not leftovers[0].exists()
    assert_frame_equal(store.scan(entry).collect(), frame_for(k))


def test_concurrent_publishers_of_the_same_keys_end_with_one_readable_row_per_key(
    manifest_url: str, data_dir: Path, ac_name: str, make_store: Callable[..., EntryStore]
) -> None:
    # The workers open the store first, so on SQLite they also race to create the schema.
    args = [(manifest_url, str(data_dir), ac_name, worker, ROUNDS) for worker in range(WORKERS)]
    assert run_spawned(publish_and_read_worker, args) == [0] * WORKERS

    store = make_store()
    keys = concurrent_keys(ac_name)
    entries = store.list_entries(ac_name)
    assert sorted(e.key.dataset_id for e in entries) == sorted(k.dataset_id for k in keys)
    for entry in entries:
        assert entry.version == WORKERS * ROUNDS, "every publish replaced the previous one, none was lost"
        assert_frame_equal(store.scan(entry).collect(), frame_for(entry.key))

    query = sa.select(sa.func.count()).where(engine_pending_deletions.c.ac_name == ac_name)
    with store._engine.connect() as conn:
        retired = conn.execute(query).scalar_one()
    assert retired == len(keys) * (WORKERS * ROUNDS - 1)
    on_disk = {p for p in (data_dir / ac_name).rglob("*") if p.is_file()}
    assert {e.path for e in entries} <= on_disk and len(on_disk) == len(keys) * WORKERS * ROUNDS


def test_concurrent_publishers_of_overlapping_slice_ranges_lose_no_slice_and_retire_files_exactly(
    manifest_url: str, data_dir: Path, ac_name: str, make_store: Callable[..., EntryStore]
) -> None:
    # Worker w publishes days 4w..4w+11, so most days are written by two or three workers at once.
    args = [(manifest_url, str(data_dir), ac_name, worker, ROUNDS) for worker in range(WORKERS)]
    assert run_spawned(publish_slices_worker, args) == [0] * WORKERS

    store = make_store()
    base = slice_base(ac_name)
    union = days(0, 4 * (WORKERS - 1) + 12)
    slices = store.list_slices(base)
    assert [e.key.slice_day for e in slices] == union, "one row per slice"
    for i, entry in enumerate(slices):
        writers = sum(1 for w in range(WORKERS) if 4 * w <= i < 4 * w + 12)
        assert entry.version == writers * ROUNDS, f"day {i}: every publish replaced the last, none was lost"
        assert entry.row_count == day_rows(union[i]).height
        assert_frame_equal(store.scan_slices([entry]).collect(), day_rows(union[i]))

    # A file is retired exactly when no row references it: never both, never neither.
    with store._engine.connect() as conn:
        entries_query = sa.select(engine_entries.c.parquet_path).where(engine_entries.c.ac_name == ac_name)
        referenced = {str(p) for p in conn.execute(entries_query).scalars()}
        pending_query = sa.select(engine_pending_deletions.c.path).where(
            engine_pending_deletions.c.ac_name == ac_name
        )
        retired = {str(p) for p in conn.execute(pending_query).scalars()}
    on_disk = {
        p.relative_to(data_dir.resolve()).as_posix()
        for p in (data_dir / ac_name).resolve().rglob("*.parquet")
    }
    assert not referenced & retired, "a file still read by a slice was retired"
    assert on_disk == referenced | retired and len(on_disk) == WORKERS * ROUNDS, "a replaced file leaked"
