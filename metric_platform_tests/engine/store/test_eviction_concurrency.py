"""Evictors, publishers and request counters in several processes ("spawn") never deadlock nor lose data.

The lock order in ``manifest`` puts the eviction lock first and the requests row last; this runs
every path that takes them side by side on overlapping keys.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from metric_platform.engine.store import ByteTotals, EntryStore, EvictionUnit
from metric_platform_tests.engine.store._support import (
    days,
    frame_for,
    key,
    meta,
    run_spawned,
    slice_base,
    slice_frame,
)

WORKERS = 3
ROUNDS = 8


def _some(totals: ByteTotals, units: list[EvictionUnit]) -> list[EvictionUnit]:
    # Every other unit, by file: evicts part of what the others just wrote.
    return units[::2] if totals.evictable else []


def evict_publish_count_worker(manifest_url: str, data_dir: str, ac_name: str, worker: int) -> None:
    whole = [key(ac_name, f"family_{i}") for i in range(3)]
    base = slice_base(ac_name)
    with (
        EntryStore(manifest_url, Path(data_dir), clock=lambda: datetime.now(UTC)) as store,
        EntryStore(
            manifest_url,
            Path(data_dir),
            grace_seconds=0,
            clock=lambda: datetime.now(UTC) + timedelta(hours=2),
        ) as sweeper,
    ):
        for round_ in range(ROUNDS):
            order = whole[worker % 3 :] + whole[: worker % 3]
            store.publish_many([(k, frame_for(k, rows=20), meta()) for k in order])
            span = days(2 * worker + round_ % 3, 5)
            store.publish_slices(base, slice_frame(span), slice_column="day", slices=span, meta=meta())
            listed = store.list_entries(ac_name)
            store.record_access(listed[::-1] if worker % 2 else listed, request=base)
            stale_units = store.eviction_units(ac_name)
            if (round_ + worker) % 2:
                store.evict(ac_name, _some)
            else:
                store.evict_units(stale_units[1::2])
            store.prune_requests(ac_name, before=datetime.now(UTC).date() - timedelta(days=1))
            # Whatever was evicted meanwhile, what is listed now must read (or be gone in a retry).
            for entry in store.list_entries(ac_name):
                if not entry.path.is_file():
                    assert not store.still_current([entry]), f"{entry.key.describe()} names a deleted file"
            if worker == 0:
                sweeper.sweep(ac_name=ac_name)


def test_evictors_publishers_and_request_counters_never_deadlock_nor_lose_a_file_or_a_hit(
    manifest_url: str, data_dir: Path, ac_name: str, make_store: Callable[..., EntryStore]
) -> None:
    args = (manifest_url, str(data_dir), ac_name)
    codes = run_spawned(evict_publish_count_worker, [(*args, w) for w in range(WORKERS)])
    assert codes == [0] * WORKERS, "a worker failed (its traceback is above)"

    store = make_store()
    entries = store.list_entries(ac_name)
    # A zero-grace sweep ran two hours ahead: a file is deleted only once no row references it.
    assert all(entry.path.is_file() for entry in entries), "a current row names a deleted file"
    for entry in entries:
        assert store.scan_slices([entry]).collect().height == entry.row_count
    (grain,) = store.request_counts(ac_name, since=datetime.now(UTC).date() - timedelta(days=1))
    assert grain.hits == WORKERS * ROUNDS, "every request counted once"
    units = store.eviction_units(ac_name)
    assert sum(u.byte_size for u in units) == store.byte_totals(ac_name).evictable
