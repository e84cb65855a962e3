"""Every write path locks in one global order, so no two transactions deadlock (see ``manifest``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from metric_platform.db import write_transaction
from metric_platform.engine.store import EntryStore, manifest
from metric_platform_tests.engine.store._support import (
    frame_for,
    key,
    lock_order_worker,
    meta,
    run_spawned,
    slice_base,
)

WORKERS = 3
SECONDS = 2.0


@pytest.mark.postgres
def test_record_access_skips_rows_a_publisher_holds_instead_of_waiting(
    pg_url: str, data_dir: Path, ac_name: str
) -> None:
    # The reviewer's deadlock: a publish of [a, b] holds a's row and then wants b's, while
    # record_access([a, b]) locks by row id, b (published first) before a.
    with EntryStore(pg_url, data_dir) as store:
        a, b = key(ac_name, "a"), key(ac_name, "b")
        eb = store.publish(b, frame_for(b, rows=3), meta())
        ea = store.publish(a, frame_for(a, rows=3), meta())
        assert eb.entry_id < ea.entry_id and manifest.sort_key(a) < manifest.sort_key(b)
        with write_transaction(store._engine) as conn:  # publish_many([a, b]), half done
            manifest.lock_bases(conn, [a, b])
            now = datetime.now(UTC)
            manifest.upsert_entry(conn, a, meta(), parquet_path="x/a", row_count=3, byte_size=1, now=now)
            stamper = threading.Thread(target=store.record_access, args=([ea, eb],))
            stamper.start()
            stamper.join(timeout=10)
            done_while_held = not stamper.is_alive()
            manifest.upsert_entry(conn, b, meta(), parquet_path="x/b", row_count=3, byte_size=1, now=now)
        stamper.join()
        assert done_while_held, "record_access waited for the publisher's locks"
        got_a, got_b = store.get(a), store.get(b)
        assert got_a is not None and got_b is not None
        assert (got_a.access_count, got_b.access_count) == (0, 1), "the held row is skipped, not waited for"


def test_every_write_path_from_several_processes_never_deadlocks_nor_loses_a_file(
    manifest_url: str, data_dir: Path, ac_name: str, make_store: Callable[..., EntryStore]
) -> None:
    args = (manifest_url, str(data_dir), ac_name)
    codes = run_spawned(lock_order_worker, [(*args, w, SECONDS) for w in range(WORKERS)])
    assert codes == [0] * WORKERS, "a worker failed (its traceback is above)"

    store = make_store()
    entries = store.list_entries(ac_name)
    assert len(store.list_slices(slice_base(ac_name))) == 2 * (WORKERS - 1) + 2 + 6
    # A zero-grace sweep ran two hours ahead throughout: only the in-flight registrations kept
    # the files of publishes between their writes and their commits.
    assert all(entry.path.is_file() for entry in entries), "a committed row names a deleted file"
    assert store.drop_unreadable(entries) == 0
    for entry in entries:
        assert store.scan_slices([entry]).collect().height == entry.row_count
