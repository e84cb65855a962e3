"""Day slices sharing one file per computed range, on a SQLite-file manifest and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from metric_platform.engine.store import Domain, EntryKey, EntryStore, GrainSummary, UnreadableEntryError
from metric_platform.engine.store.in_flight import IN_FLIGHT_MAX_AGE
from metric_platform.engine.store.schema import engine_pending_deletions
from metric_platform.engine.store.slices import apportion_bytes
from metric_platform.errors import InvalidRequestError, StorageError
from metric_platform_tests.engine.store._support import (
    SLICE_SCHEMA,
    day_rows,
    days,
    meta,
    slice_base,
    slice_frame,
)
from metric_platform_tests.engine.store.conftest import GRACE_SECONDS, FakeClock
from metric_platform_tests.engine.store.test_entry_store import PAST_ORPHAN_AGE, _pending_paths


def _files(store: EntryStore) -> list[Path]:
    return sorted(p for p in store.data_dir.rglob("*") if p.is_file())


def _relative(store: EntryStore, path: Path) -> str:
    return path.relative_to(store.data_dir).as_posix()


def _statements(store: EntryStore) -> list[str]:
    """The verb of every SQL statement the store's engine runs from now on (BEGIN left out)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb != "BEGIN":  # SQLite's transaction start is a statement here, PostgreSQL's is not
            seen.append(verb)

    sa.event.listen(store._engine, "before_cursor_execute", record)
    return seen


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("day", "value")


def test_publish_slices_writes_one_file_and_one_row_per_slice_including_empty_ones(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    base, week = slice_base(ac_name), days(0, 7)
    frame = slice_frame(week)
    per_day = {day: day_rows(day).height for day in week}
    assert 0 in per_day.values() and sum(per_day.values()) > 0, "the fixture needs empty and full days"
    cutoffs = {day: meta(stability_cutoff=day if i % 2 else None) for i, day in enumerate(week)}
    commits: list[object] = []
    sa.event.listen(store._engine, "commit", commits.append)

    entries = store.publish_slices(base, frame, slice_column="day", slices=week, meta=cutoffs)

    assert len(commits) == 2, "one to register the file before writing it, ONE for every slice"
    (only_file,) = _files(store)
    assert [e.key for e in entries] == [base.with_slice(day) for day in week]
    assert {e.path for e in entries} == {only_file}
    assert [e.row_count for e in entries] == [per_day[day] for day in week]
    assert sum(e.byte_size for e in entries) == only_file.stat().st_size
    assert all(e.byte_size == 0 for e in entries if e.row_count == 0)
    assert all((e.slice_column, e.file_slice_count, e.version) == ("day", 7, 1) for e in entries)
    assert [e.meta for e in entries] == [cutoffs[day] for day in week]
    assert all(e.materialized_at == clock.now for e in entries)
    assert [store.get(base.with_slice(day)) for day in week] == entries
    assert_frame_equal(_sorted(store.scan_slices(entries).collect()), _sorted(frame))
    assert store.total_bytes(ac_name) == only_file.stat().st_size


def test_publish_slices_stores_rows_grouped_by_slice(store: EntryStore, ac_name: str) -> None:
    three = days(0, 3)
    shuffled = slice_frame(three, rows=3).sample(fraction=1.0, shuffle=True, seed=7)
    entries = store.publish_slices(
        slice_base(ac_name), shuffled, slice_column="day", slices=three, meta=meta()
    )
    stored = store.scan(entries[0]).collect()
    assert stored.get_column("day").is_sorted()
    for day in three:  # within a slice the caller's order is kept
        assert_frame_equal(stored.filter(pl.col("day") == day), shuffled.filter(pl.col("day") == day))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"frame": slice_frame(days(0, 4), rows=1)}, r"1 row\(s\) have day = 2026-01-04"),
        ({"frame": slice_frame(days(0, 3), rows=1).with_columns(day=pl.lit(None, pl.Date))}, "day = null"),
        ({"slice_column": "region"}, "'region' is String"),
        ({"slice_column": "nope"}, "'nope' is missing"),
        ({"slices": [*days(0, 3), days(0, 1)[0]]}, "2026-01-01 twice"),
        ({"meta": {days(0, 1)[0]: meta()}}, "missing 2026-01-02, 2026-01-03"),
        ({"slices": ["2026-01-01", "2026-01-02", "2026-01-03"]}, "datetime.date values"),
        ({"frame": slice_frame(days(0, 3), rows=1).lazy()}, "collect a LazyFrame"),
    ],
)
def test_publish_slices_refuses_bad_requests_and_writes_nothing(
    store: EntryStore, ac_name: str, change: dict[str, Any], match: str
) -> None:
    request: dict[str, Any] = {
        "frame": slice_frame(days(0, 3), rows=1),
        "slice_column": "day",
        "slices": days(0, 3),
        "meta": meta(),
    }
    request.update(change)
    base = slice_base(ac_name)
    with pytest.raises(InvalidRequestError, match=match):
        store.publish_slices(base, request.pop("frame"), **request)
    assert _files(store) == [] and store.list_slices(base) == []


def test_publish_slices_takes_the_key_without_slice(store: EntryStore, ac_name: str) -> None:
    sliced = slice_base(ac_name).with_slice(date(2026, 1, 1))
    with pytest.raises(InvalidRequestError, match=r"key without a slice.*key\.base"):
        store.publish_slices(sliced, slice_frame([]), slice_column="day", slices=[], meta=meta())
    with pytest.raises(InvalidRequestError, match="key without a slice"):
        store.list_slices(sliced)
    assert (
        store.publish_slices(sliced.base, slice_frame([]), slice_column="day", slices=[], meta=meta()) == []
    )


def test_list_slices_is_inclusive_ordered_and_leaves_out_whole_entries_and_other_grains(
    store: EntryStore, ac_name: str
) -> None:
    base, ten = slice_base(ac_name), days(0, 10)
    store.publish_slices(base, slice_frame(ten), slice_column="day", slices=list(reversed(ten)), meta=meta())
    store.publish(base, slice_frame(ten), meta())  # the whole entry of the same grain
    months = [date(2026, 1, 1), date(2026, 2, 1)]
    monthly = slice_base(ac_name, ("region", "month"))
    store.publish_slices(monthly, slice_frame(months), slice_column="day", slices=months, meta=meta())

    def listed(**bounds: date) -> list[date | None]:
        return [e.key.slice_day for e in store.list_slices(base, **bounds)]

    assert listed() == ten
    assert listed(start=ten[2], end=ten[4]) == ten[2:5]
    assert listed(start=ten[7]) == ten[7:]
    assert listed(end=ten[0]) == ten[:1]
    assert listed(start=date(2025, 12, 1), end=date(2025, 12, 31)) == []
    assert listed(start=ten[5], end=ten[4]) == []
    assert [e.key.slice_day for e in store.list_slices(monthly, start=date(2026, 1, 15))] == months[1:]


def test_list_grains_summarises_every_anchor_of_a_dataset_in_one_query(
    store: EntryStore, ac_name: str
) -> None:
    daily, monthly, whole_only = (
        slice_base(ac_name, anchor) for anchor in [("region", "day"), ("region", "month"), ("region",)]
    )
    week, months = days(0, 7), [date(2026, 1, 1), date(2026, 3, 1)]
    store.publish_slices(daily, slice_frame(week), slice_column="day", slices=week, meta=meta())
    store.publish(daily, slice_frame(week, rows=2), meta())
    store.publish_slices(monthly, slice_frame(months, rows=5), slice_column="day", slices=months, meta=meta())
    store.publish(whole_only, slice_frame(week, rows=1), meta())
    store.publish(EntryKey(ac_name, Domain.QM, "revenue", ("x",)), slice_frame(week), meta())
    store.publish(EntryKey(ac_name, Domain.METRIC, "other", ("a",)), slice_frame(week), meta())
    statements = _statements(store)

    grains = store.list_grains(ac_name, Domain.METRIC, "revenue")

    assert statements == ["SELECT"]
    assert grains == {
        ("region", "day"): GrainSummary(
            ("region", "day"), 7, week[0], week[-1], slice_frame(week).height, True, 14
        ),
        ("region", "month"): GrainSummary(("region", "month"), 2, months[0], months[1], 10, False, 0),
        ("region",): GrainSummary(("region",), 0, None, None, 0, True, 7),
    }
    assert store.list_grains(ac_name, Domain.METRIC, "nothing") == {}


def test_scan_slices_reads_each_file_once_filtered_to_the_requested_days(
    store: EntryStore, ac_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, eight = slice_base(ac_name), days(0, 8)
    first = store.publish_slices(
        base, slice_frame(eight[:5], rows=2), slice_column="day", slices=eight[:5], meta=meta()
    )
    second = store.publish_slices(
        base, slice_frame(eight[5:], rows=2), slice_column="day", slices=eight[5:], meta=meta()
    )
    scans: list[object] = []
    real_scan = pl.scan_parquet

    def counting_scan(path: Path, **kw: Any) -> pl.LazyFrame:
        scans.append(path)
        return real_scan(path, **kw)

    monkeypatch.setattr(pl, "scan_parquet", counting_scan)

    def read(entries: Sequence[Any]) -> pl.DataFrame:
        return _sorted(store.scan_slices(entries).collect())

    subset = [first[1], first[3]]
    assert_frame_equal(read(subset), slice_frame([eight[1], eight[3]], rows=2))
    assert "is_in" in store.scan_slices(subset).explain()
    assert "is_in" not in store.scan_slices(first).explain(), "a fully requested file needs no filter"
    scans.clear()
    across = first[3:] + second[:2]
    assert_frame_equal(read(across), slice_frame(eight[3:7], rows=2))
    assert len(scans) == 2, "one scan per distinct file, not per slice"
    assert_frame_equal(read(store.list_slices(base)), slice_frame(eight, rows=2))
    assert_frame_equal(read([first[0], first[0]]), slice_frame(eight[:1], rows=2))

    store.publish(base, slice_frame(eight[:1], rows=1), meta())
    whole = store.get(base)
    assert whole is not None
    assert_frame_equal(
        read([whole, second[0]]),
        _sorted(pl.concat([slice_frame(eight[:1], rows=1), slice_frame(eight[5:6], rows=2)])),
    )


def test_scan_slices_refuses_mixed_schemas_duplicate_versions_and_schemaless_empty_input(
    store: EntryStore, ac_name: str
) -> None:
    base, four = slice_base(ac_name), days(0, 4)
    a = store.publish_slices(
        base, slice_frame(four[:2], rows=1), slice_column="day", slices=four[:2], meta=meta()
    )
    ints = slice_frame(four[2:], rows=1).with_columns(pl.col("value").cast(pl.Int64))
    b = store.publish_slices(base, ints, slice_column="day", slices=four[2:], meta=meta())
    with pytest.raises(StorageError, match=rf"different schemas.*{ac_name}/METRIC/revenue.*@2026-01-03 v1"):
        store.scan_slices([a[0], b[0]])

    newer = store.publish_slices(
        base, slice_frame(four[:1], rows=2), slice_column="day", slices=four[:1], meta=meta()
    )
    with pytest.raises(InvalidRequestError, match=r"two versions of .*@2026-01-01"):
        store.scan_slices([a[0], newer[0]])

    with pytest.raises(InvalidRequestError, match="schema="):
        store.scan_slices([])
    empty = store.scan_slices([], schema=SLICE_SCHEMA).collect()
    assert empty.schema == SLICE_SCHEMA and empty.height == 0

    b[0].path.unlink()
    with pytest.raises(UnreadableEntryError, match=r"@2026-01-03 v1, .*@2026-01-04 v1 is missing"):
        store.scan_slices(b)


def test_a_shared_file_lives_until_its_last_slice_is_replaced_or_deleted(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    base, three = slice_base(ac_name), days(0, 3)
    old = store.publish_slices(
        base, slice_frame(three, rows=2), slice_column="day", slices=three, meta=meta()
    )
    shared = old[0].path
    planned = store.scan_slices(old)  # planned before any replacement

    clock.advance(5)
    (middle,) = store.publish_slices(
        base, slice_frame(three[1:2], rows=5), slice_column="day", slices=three[1:2], meta=meta()
    )
    assert middle.path != shared and (middle.version, middle.entry_id) == (2, old[1].entry_id)
    assert _pending_paths(store, ac_name) == [], "days 1 and 3 still read the shared file"
    current = store.list_slices(base)
    assert [e.path for e in current] == [shared, middle.path, shared]
    expected = _sorted(pl.concat([slice_frame(three[::2], rows=2), slice_frame(three[1:2], rows=5)]))
    assert_frame_equal(_sorted(store.scan_slices(current).collect()), expected)
    assert_frame_equal(_sorted(planned.collect()), slice_frame(three, rows=2))

    # Past both the grace and the orphan age: the sweep still keeps a file that rows reference.
    clock.advance(PAST_ORPHAN_AGE)
    report = store.sweep(ac_name=ac_name)
    assert (report.files_deleted, report.orphans_deleted) == (0, 0) and shared.exists()

    first = store.publish(base.with_slice(three[0]), slice_frame(three[:1], rows=1), meta())
    assert first.slice_column is None and first.file_slice_count is None
    assert _pending_paths(store, ac_name) == [], "day 3 still reads the shared file"
    assert_frame_equal(store.scan_slices([first]).collect(), slice_frame(three[:1], rows=1))

    assert store.delete(base.with_slice(three[2])) is True
    assert _pending_paths(store, ac_name) == [_relative(store, shared)]
    clock.advance(GRACE_SECONDS + 1)
    report = store.sweep(ac_name=ac_name)
    assert (report.files_deleted, report.orphans_deleted) == (1, 0) and not shared.exists()
    assert set(_files(store)) == {middle.path, first.path}


def test_republishing_a_whole_range_retires_its_old_file_once(store: EntryStore, ac_name: str) -> None:
    base, five = slice_base(ac_name), days(0, 5)
    old = store.publish_slices(base, slice_frame(five), slice_column="day", slices=five, meta=meta())
    new = store.publish_slices(base, slice_frame(five), slice_column="day", slices=five, meta=meta())
    assert _pending_paths(store, ac_name) == [_relative(store, old[0].path)]
    assert [e.version for e in new] == [2] * 5 and len({e.path for e in new}) == 1


def test_sweep_never_deletes_a_pending_file_that_a_row_still_references(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    two = days(0, 2)
    entries = store.publish_slices(
        slice_base(ac_name), slice_frame(two), slice_column="day", slices=two, meta=meta()
    )
    shared = _relative(store, entries[0].path)
    with store._engine.begin() as conn:  # as a writer that ignores sharing would have done
        conn.execute(
            sa.insert(engine_pending_deletions).values(path=shared, ac_name=ac_name, delete_after=clock.now)
        )
    clock.advance(PAST_ORPHAN_AGE)
    assert store.sweep(ac_name=ac_name).files_deleted == 0
    assert entries[0].path.exists() and _pending_paths(store, ac_name) == [shared]
    store.delete(entries[0].key)
    assert store.sweep(ac_name=ac_name).files_deleted == 0, "still referenced by the second slice"
    store.delete(entries[1].key)
    assert store.sweep(ac_name=ac_name).files_deleted == 0, "the last delete restarted the grace"
    clock.advance(GRACE_SECONDS + 1)
    assert store.sweep(ac_name=ac_name).files_deleted == 1 and not entries[0].path.exists()


class _FailingStore(EntryStore):
    def _before_manifest_commit(self, paths: Sequence[Path]) -> None:
        assert len(paths) == 1 and paths[0].is_file()
        raise RuntimeError("simulated crash before the manifest commit")


def test_crash_before_the_manifest_commit_of_publish_slices_leaves_no_rows_and_a_registered_file(
    make_store: Callable[..., EntryStore], ac_name: str, clock: FakeClock
) -> None:
    store, failing = make_store(), make_store(_FailingStore)
    base, week = slice_base(ac_name), days(0, 7)
    with pytest.raises(RuntimeError, match="simulated"):
        failing.publish_slices(base, slice_frame(week), slice_column="day", slices=week, meta=meta())

    assert store.list_slices(base) == [] and store.list_entries(ac_name) == []
    (leftover,) = _files(store)
    assert _pending_paths(store, ac_name) == [_relative(store, leftover)]
    clock.advance(PAST_ORPHAN_AGE)
    assert store.sweep(ac_name=ac_name).files_deleted == 0, "a registered file may be an in-flight publish"
    clock.advance(IN_FLIGHT_MAX_AGE.total_seconds())
    assert store.sweep(ac_name=ac_name).files_deleted == 1 and not leftover.exists()

    entries = store.publish_slices(base, slice_frame(week), slice_column="day", slices=week, meta=meta())
    assert [e.version for e in entries] == [1] * 7


def test_record_access_of_hundreds_of_slices_is_one_statement(store: EntryStore, ac_name: str) -> None:
    many = days(0, 400)
    entries = store.publish_slices(
        slice_base(ac_name), slice_frame(many), slice_column="day", slices=many, meta=meta()
    )
    statements = _statements(store)
    store.record_access(entries)
    assert statements.count("UPDATE") == 1
    assert {e.access_count for e in store.list_slices(slice_base(ac_name))} == {1}


@given(
    size=st.integers(min_value=0, max_value=10**9),
    rows=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=40),
)
def test_apportioned_bytes_sum_to_the_file_size_and_follow_the_rows(size: int, rows: list[int]) -> None:
    shares = apportion_bytes(size, rows)
    assert sum(shares) == size and len(shares) == len(rows)
    total = sum(rows)
    for share, count in zip(shares, rows, strict=True):
        exact = size * count / total if total else size / len(rows)
        assert abs(share - exact) < 1
