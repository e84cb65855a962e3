"""Byte totals, eviction units and eviction, on a SQLite-file manifest and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from datetime import date

import pytest
from polars.testing import assert_frame_equal

from metric_platform.engine.store import (
    ByteTotals,
    Domain,
    Entry,
    EntryKey,
    EntryStore,
    EvictionResult,
    EvictionUnit,
)
from metric_platform.errors import InvalidRequestError
from metric_platform_tests.engine.store._support import days, frame_for, key, meta, slice_base, slice_frame
from metric_platform_tests.engine.store.conftest import GRACE_SECONDS, FakeClock
from metric_platform_tests.engine.store.test_entry_store import _pending_paths

Policy = Callable[[ByteTotals, list[EvictionUnit]], Sequence[EvictionUnit]]


def _relative(store: EntryStore, entry: Entry) -> str:
    return entry.path.relative_to(store.data_dir).as_posix()


def _rows(*entries: Entry) -> tuple[tuple[int, int], ...]:
    return tuple((e.entry_id, e.version) for e in entries)


def _slices(store: EntryStore, base: EntryKey, span: list[date], **meta_changes: object) -> list[Entry]:
    return store.publish_slices(
        base, slice_frame(span, rows=2), slice_column="day", slices=span, meta=meta(**meta_changes)
    )


def _whole(store: EntryStore, k: EntryKey, **meta_changes: object) -> Entry:
    return store.publish(k, frame_for(k, rows=40), meta(**meta_changes))


def _unit_at(units: list[EvictionUnit], entry: Entry) -> EvictionUnit:
    (unit,) = [u for u in units if any(entry_id == entry.entry_id for entry_id, _ in u.rows)]
    return unit


def _everything(_totals: ByteTotals, units: list[EvictionUnit]) -> list[EvictionUnit]:
    return units


def test_byte_totals_split_the_manifest_bytes_into_evictable_and_pinned(
    store: EntryStore, ac_name: str
) -> None:
    assert store.byte_totals(ac_name) == ByteTotals(evictable=0, pinned=0)
    a = _whole(store, key(ac_name, "a"))
    p = _whole(store, key(ac_name, "p"), pinned=True)
    sliced = _slices(store, slice_base(ac_name), days(0, 3))
    _whole(store, key(f"{ac_name}_other", "a"))  # another AC
    store.set_pinned(sliced[0].key, True)

    pinned = p.byte_size + sliced[0].byte_size
    evictable = a.byte_size + sliced[1].byte_size + sliced[2].byte_size
    assert store.byte_totals(ac_name) == ByteTotals(evictable=evictable, pinned=pinned)
    assert store.total_bytes(ac_name, evictable_only=True) == evictable
    assert store.total_bytes(ac_name) == evictable + pinned


def test_eviction_units_group_the_unpinned_rows_of_a_base_key_by_file(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    base, four = slice_base(ac_name), days(0, 4)
    first = _slices(store, base, four)  # file F1: days 0-3
    clock.advance(1)
    second = _slices(store, base, four[2:])  # file F2: days 2-3; F1 keeps days 0-1
    store.set_pinned(first[0].key, True)  # F1's unpinned rows: day 1 only
    clock.advance(1)
    whole = _whole(store, key(ac_name, "orders"))
    pinned = _whole(store, key(ac_name, "pinned"), pinned=True)
    qm = _whole(store, EntryKey(ac_name, Domain.QM, "orders", ("orders", "amount")))
    clock.advance(1)
    store.record_access([first[1], second[0]])
    clock.advance(1)
    store.record_access([second[0]])
    late = clock.now

    units = store.eviction_units(ac_name)
    assert {(u.domain, u.dataset_id, u.anchor, u.rows) for u in units} == {
        (Domain.METRIC, "revenue", ("region", "day"), _rows(first[1])),
        (Domain.METRIC, "revenue", ("region", "day"), _rows(*second)),
        (Domain.METRIC, "orders", ("region",), _rows(whole)),
        (Domain.QM, "orders", ("orders", "amount"), _rows(qm)),
    }
    order = [(u.domain.value, u.dataset_id, ",".join(u.anchor), u.path) for u in units]
    assert order == sorted(order), "by domain, dataset, anchor and file"
    assert all(pinned.entry_id not in dict(u.rows) for u in units)

    f2 = _unit_at(units, second[0])
    assert f2.path == _relative(store, second[0]) and f2.slices == 2
    assert (f2.byte_size, f2.row_count) == (second[0].byte_size + second[1].byte_size, 4)
    assert (f2.first_day, f2.last_day) == (four[2], four[3])
    assert (f2.last_access_at, f2.access_count) == (late, 2), "latest access, highest count"
    f1 = _unit_at(units, first[1])
    assert (f1.path, f1.slices, f1.first_day, f1.last_day) == (
        _relative(store, first[0]),
        1,
        four[1],
        four[1],
    )
    w = _unit_at(units, whole)
    assert (w.first_day, w.last_day, w.byte_size, w.row_count, w.access_count) == (
        None,
        None,
        whole.byte_size,
        40,
        0,
    )

    assert {u.domain for u in store.eviction_units(ac_name, domain=Domain.QM)} == {Domain.QM}
    assert len(store.eviction_units(ac_name, domain=Domain.METRIC)) == 3
    assert sum(u.byte_size for u in units) == store.byte_totals(ac_name).evictable


def test_evict_deletes_the_chosen_units_and_retires_a_file_when_its_last_row_goes(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    base, four = slice_base(ac_name), days(0, 4)
    sliced = _slices(store, base, four)
    store.set_pinned(sliced[0].key, True)
    a, b = _whole(store, key(ac_name, "a")), _whole(store, key(ac_name, "b"))
    planned_slices = store.scan_slices(sliced)  # planned before the eviction
    planned_a = store.scan(a)
    seen: list[ByteTotals] = []

    def choose(totals: ByteTotals, units: list[EvictionUnit]) -> list[EvictionUnit]:
        seen.append(totals)
        return [_unit_at(units, sliced[1]), _unit_at(units, a)]

    chosen, result = store.evict(ac_name, choose)
    assert seen == [
        ByteTotals(evictable=sum(e.byte_size for e in (*sliced[1:], a, b)), pinned=sliced[0].byte_size)
    ]
    assert [u.rows for u in chosen] == [_rows(*sliced[1:]), _rows(a)]
    freed = sum(e.byte_size for e in (*sliced[1:], a))
    assert result == EvictionResult(rows_deleted=4, bytes_freed=freed, files_retired=1, rows_skipped=0)
    assert {e.key for e in store.list_entries(ac_name)} == {sliced[0].key, b.key}
    assert _pending_paths(store, ac_name) == [_relative(store, a)], (
        "the pinned slice still reads the shared file"
    )
    assert_frame_equal(planned_slices.collect(), slice_frame(four, rows=2))
    assert_frame_equal(planned_a.collect(), frame_for(a.key, rows=40))  # retired, but within its grace

    store.set_pinned(sliced[0].key, False)
    _, rest = store.evict(ac_name, _everything)
    assert rest == EvictionResult(
        rows_deleted=2, bytes_freed=sliced[0].byte_size + b.byte_size, files_retired=2, rows_skipped=0
    )
    assert store.list_entries(ac_name) == [] and store.byte_totals(ac_name) == ByteTotals(0, 0)

    clock.advance(GRACE_SECONDS + 1)
    assert store.sweep(ac_name=ac_name).files_deleted == 3
    assert not any(e.path.exists() for e in (sliced[0], a, b))


def test_evict_units_skips_rows_replaced_pinned_or_deleted_since_the_read(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    base, three = slice_base(ac_name), days(0, 3)
    sliced = _slices(store, base, three)
    a, b, c = (_whole(store, key(ac_name, name)) for name in ("a", "b", "c"))  # c: the highest id
    units = store.eviction_units(ac_name)

    clock.advance(1)
    _whole(store, a.key)  # replaced: version 2
    store.set_pinned(b.key, True)
    store.publish(sliced[1].key, slice_frame(three[1:2]), meta())  # day 1 replaced, in a file of its own
    assert store.delete(c.key)
    # Recomputed: a new row, which SQLite may give the deleted row's id (and version 1 again).
    c_again = _whole(store, c.key)
    assert c_again.path != c.path

    result = store.evict_units(units)
    assert result == EvictionResult(
        rows_deleted=2, bytes_freed=sliced[0].byte_size + sliced[2].byte_size, files_retired=1, rows_skipped=4
    )
    left = {e.key: e for e in store.list_entries(ac_name)}
    assert set(left) == {a.key, b.key, sliced[1].key, c.key}
    assert (left[a.key].version, left[b.key].pinned, left[sliced[1].key].version) == (2, True, 2)
    assert left[c.key] == c_again
    assert _relative(store, sliced[0]) in _pending_paths(store, ac_name), "no row reads the shared file now"

    again = store.evict_units(units)
    assert again == EvictionResult(rows_deleted=0, bytes_freed=0, files_retired=0, rows_skipped=6)


def test_dry_run_reports_what_evict_would_do_and_changes_nothing(store: EntryStore, ac_name: str) -> None:
    sliced = _slices(store, slice_base(ac_name), days(0, 3))
    store.set_pinned(sliced[0].key, True)
    a = _whole(store, key(ac_name, "a"))
    before = store.list_entries(ac_name)

    chosen, would = store.evict(ac_name, _everything, dry_run=True)
    assert would == EvictionResult(
        rows_deleted=3,
        bytes_freed=sliced[1].byte_size + sliced[2].byte_size + a.byte_size,
        files_retired=1,
        rows_skipped=0,
    )
    assert store.list_entries(ac_name) == before and _pending_paths(store, ac_name) == []
    assert store.byte_totals(ac_name).evictable == would.bytes_freed

    chosen_now, did = store.evict(ac_name, _everything)
    assert (chosen_now, did) == (chosen, would)


def test_a_policy_must_choose_among_the_units_it_was_offered_each_once(
    store: EntryStore, ac_name: str
) -> None:
    a = _whole(store, key(ac_name, "a"))
    with pytest.raises(InvalidRequestError, match="not one of the units"):
        store.evict(ac_name, lambda _t, units: [dataclasses.replace(units[0], rows=((a.entry_id, 99),))])
    with pytest.raises(InvalidRequestError, match="twice"):
        store.evict(ac_name, lambda _t, units: [units[0], units[0]])
    assert store.list_entries(ac_name) == [a], "a refused choice deletes nothing"
    assert store.evict(ac_name, lambda _t, _u: [])[1] == EvictionResult(0, 0, 0, 0)


def test_two_concurrent_evictors_never_both_evict_for_one_overshoot(
    make_store: Callable[..., EntryStore], ac_name: str, clock: FakeClock
) -> None:
    first_store, second_store = make_store(), make_store()
    for i in range(6):
        _whole(first_store, key(ac_name, f"f{i}"))
        clock.advance(1)
    total = first_store.byte_totals(ac_name).evictable
    budget = total // 2
    inside = threading.Event()
    seen: dict[str, ByteTotals] = {}

    def policy(name: str, newest_first: bool) -> Policy:
        # The two evictors pick from opposite ends: run side by side, they would evict disjoint units.
        def choose(totals: ByteTotals, units: list[EvictionUnit]) -> list[EvictionUnit]:
            seen[name] = totals
            if name == "first":
                inside.set()
                time.sleep(0.4)  # the second evictor starts meanwhile
            picked: list[EvictionUnit] = []
            left = totals.evictable
            for unit in sorted(units, key=lambda u: u.last_access_at, reverse=newest_first):
                if left <= budget:
                    break
                picked.append(unit)
                left -= unit.byte_size
            return picked

        return choose

    results: dict[str, EvictionResult] = {}

    def run(name: str, store: EntryStore, newest_first: bool) -> None:
        if name == "second":
            assert inside.wait(timeout=30)
        results[name] = store.evict(ac_name, policy(name, newest_first))[1]

    threads = [
        threading.Thread(target=run, args=("first", first_store, False)),
        threading.Thread(target=run, args=("second", second_store, True)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert set(results) == {"first", "second"}, "an evictor failed (its traceback is above)"

    assert seen["first"].evictable == total
    assert seen["second"].evictable == total - results["first"].bytes_freed <= budget, "waited for the first"
    assert results["first"].rows_deleted > 0 and results["second"] == EvictionResult(0, 0, 0, 0)
    assert first_store.byte_totals(ac_name).evictable == total - results["first"].bytes_freed


def test_still_current_keeps_the_entries_whose_row_is_unchanged_in_input_order(
    store: EntryStore, ac_name: str
) -> None:
    sliced = _slices(store, slice_base(ac_name), days(0, 2))
    a, b, c = (_whole(store, key(ac_name, name)) for name in ("a", "b", "c"))
    _whole(store, a.key)  # replaced
    store.evict_units([_unit_at(store.eviction_units(ac_name), b)])  # evicted
    assert store.delete(c.key)
    _whole(store, c.key)  # deleted and recomputed: a new row (on SQLite maybe with the old id)

    assert store.still_current([c, sliced[1], a, b, sliced[0]]) == [sliced[1], sliced[0]]
    assert store.still_current([]) == []
    with pytest.raises(InvalidRequestError, match="Entry values"):
        store.still_current([a.key])  # type: ignore[list-item]


def test_write_count_counts_committed_publishes_only_and_now_is_the_store_clock(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    assert store.write_count == 0
    a, b = key(ac_name, "a"), key(ac_name, "b")
    entry = _whole(store, a)
    store.publish_many([(a, frame_for(a), meta()), (b, frame_for(b), meta())])
    _slices(store, slice_base(ac_name), days(0, 2))
    assert store.write_count == 3

    with pytest.raises(InvalidRequestError):
        store.publish_slices(
            slice_base(ac_name), slice_frame(days(0, 1)), slice_column="day", slices=[], meta=meta()
        )
    store.record_access([entry], request=a)
    store.set_meta(ac_name, "k", "v")
    store.evict(ac_name, _everything)
    assert store.write_count == 3, "only publishes grow the bytes"
    assert store.now() == clock.now
