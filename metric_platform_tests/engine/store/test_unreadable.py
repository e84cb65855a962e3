"""Files deleted or damaged behind the store's back: the scan error names them, dropping them heals."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from metric_platform.engine.store import EntryStore, UnreadableEntryError
from metric_platform.errors import InvalidRequestError
from metric_platform_tests.engine.store._support import days, frame_for, key, meta, slice_base, slice_frame
from metric_platform_tests.engine.store.test_entry_store import _pending_paths


def _relative(store: EntryStore, path: Path) -> str:
    return path.relative_to(store.data_dir).as_posix()


def test_drop_unreadable_forgets_damaged_and_missing_entries_but_not_healthy_or_replaced_ones(
    store: EntryStore, ac_name: str
) -> None:
    corrupt, missing, healthy, replaced = (key(ac_name, name) for name in ("c", "m", "h", "r"))
    entries = store.publish_many([(k, frame_for(k, rows=4), meta()) for k in (corrupt, missing, healthy)])
    store.set_pinned(corrupt, True)
    stale = store.publish(replaced, frame_for(replaced, rows=4), meta())
    current = store.publish(replaced, frame_for(replaced, rows=6), meta())
    entries[0].path.write_bytes(b"PAR1 not really")
    entries[1].path.unlink()
    stale.path.unlink()  # as the sweep does after the grace period: the row has moved on to v2

    with pytest.raises(UnreadableEntryError) as info:
        store.scan_slices([*entries, stale])
    assert set(info.value.entries) == {entries[0], entries[1], stale}
    commits: list[object] = []
    sa.event.listen(store._engine, "commit", commits.append)

    assert store.drop_unreadable([*info.value.entries, entries[2]]) == 2
    assert len(commits) == 1
    assert {e.key for e in store.list_entries(ac_name)} == {healthy, replaced}
    assert store.get(replaced) == current and store.get(healthy) == entries[2]
    assert _pending_paths(store, ac_name) == sorted(
        [_relative(store, entries[0].path), _relative(store, entries[1].path), _relative(store, stale.path)]
    ), "the damaged files are retired (the stale one already was)"
    assert store.drop_unreadable(info.value.entries) == 0

    again = store.publish(corrupt, frame_for(corrupt, rows=4), meta())
    assert again.version == 1 and not again.pinned, "recomputed as a new entry"
    assert_frame_equal(store.scan(again).collect(), frame_for(corrupt, rows=4))


def test_scan_slices_names_every_slice_of_every_unreadable_file_and_dropping_them_heals(
    store: EntryStore, ac_name: str
) -> None:
    base, ten = slice_base(ac_name), days(0, 10)
    for part in (ten[:4], ten[4:8], ten[8:]):
        store.publish_slices(base, slice_frame(part, rows=1), slice_column="day", slices=part, meta=meta())
    listed = store.list_slices(base)
    listed[0].path.write_bytes(b"")
    listed[4].path.unlink()

    with pytest.raises(UnreadableEntryError, match=r"(?s)is unreadable.*; the file of .* is missing") as info:
        store.scan_slices(listed)
    assert info.value.entries == tuple(listed[:8]), "all slices of both files, good files left out"
    assert "recomputes them on the next request" in str(info.value)

    # Only some slices of a shared file: they go, the file stays referenced by the others.
    assert store.drop_unreadable(info.value.entries[:2]) == 2
    assert _pending_paths(store, ac_name) == []
    assert store.drop_unreadable(info.value.entries) == 6
    assert len(_pending_paths(store, ac_name)) == 2
    remaining = store.list_slices(base)
    assert remaining == listed[8:]
    assert_frame_equal(store.scan_slices(remaining).collect(), slice_frame(ten[8:], rows=1))


def test_unreadable_entry_error_survives_pickling_and_drop_refuses_non_entries(
    store: EntryStore, ac_name: str
) -> None:
    entry = store.publish(key(ac_name), frame_for(key(ac_name)), meta())
    entry.path.unlink()
    with pytest.raises(UnreadableEntryError) as info:
        store.scan(entry)
    copy = pickle.loads(pickle.dumps(info.value))
    assert isinstance(copy, UnreadableEntryError)
    assert (str(copy), copy.entries) == (str(info.value), (entry,))
    with pytest.raises(InvalidRequestError, match="takes Entry values"):
        store.drop_unreadable([entry.key])  # type: ignore[list-item]
    assert store.drop_unreadable([]) == 0 and store.get(entry.key) == entry
