"""The store's behaviour, written once and run on a SQLite-file manifest and on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from metric_platform.engine.store import Domain, EntryKey, EntryStore, UnreadableEntryError
from metric_platform.engine.store.in_flight import IN_FLIGHT_MAX_AGE
from metric_platform.engine.store.schema import engine_pending_deletions
from metric_platform.engine.store.sweeper import MIN_ORPHAN_AGE
from metric_platform.errors import InvalidRequestError, StorageError, UnknownNameError
from metric_platform.settings import Settings
from metric_platform_tests.engine.store._support import frame_for, key, meta
from metric_platform_tests.engine.store.conftest import GRACE_SECONDS, FakeClock

# A margin over the minimum orphan age for the seconds a test spends writing files after the clock started.
PAST_ORPHAN_AGE = MIN_ORPHAN_AGE.total_seconds() + 30


def _typed_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "region": ["north", None, "south"],
            "day": [date(2026, 1, 1), date(2026, 1, 2), None],
            "at": [datetime(2026, 1, 1, 12, 30, tzinfo=UTC), None, datetime(2026, 1, 3, tzinfo=UTC)],
            "naive_at": [datetime(2026, 1, 1, 1, 2, 3, 456789), None, None],
            "count": [1, None, 3],
            "value": [1.5, None, float("nan")],
            "flag": [True, None, False],
        },
        schema_overrides={"count": pl.Int32, "at": pl.Datetime("us", "UTC"), "naive_at": pl.Datetime("ns")},
    )


def _pending_paths(store: EntryStore, ac_name: str) -> list[str]:
    query = sa.select(engine_pending_deletions.c.path).where(engine_pending_deletions.c.ac_name == ac_name)
    with store._engine.connect() as conn:
        return sorted(str(p) for p in conn.execute(query).scalars())


def test_publish_get_scan_round_trip_preserves_dtypes_and_metadata(
    store: EntryStore, ac_name: str, clock: FakeClock, data_dir: Path
) -> None:
    k = key(ac_name, anchor=("region", "day"))
    m = meta(
        partition_invariant=False,
        mvt="impute",
        imputation_value="0",
        source_schemas=("orders", "stores"),
        source_filter='{"region": ["north"]}',
        stability_cutoff=date(2026, 1, 20),
        source_fingerprint="src-9",
    )
    frame = _typed_frame()
    entry = store.publish(k, frame, m)

    assert entry.key == k and entry.version == 1 and entry.meta == m
    assert entry.row_count == 3 and entry.byte_size == entry.path.stat().st_size > 0
    assert entry.path.is_absolute() and entry.path.is_relative_to(data_dir.resolve())
    assert entry.materialized_at == entry.last_access_at == clock.now
    assert entry.materialized_at.tzinfo == UTC and entry.access_count == 0
    assert store.get(k) == entry
    assert_frame_equal(store.scan(entry).collect(), frame)


def test_get_of_unknown_key_is_none_and_get_does_not_count_access(store: EntryStore, ac_name: str) -> None:
    assert store.get(key(ac_name)) is None
    store.publish(key(ac_name), frame_for(key(ac_name)), meta())
    store.get(key(ac_name))
    entry = store.get(key(ac_name))
    assert entry is not None and entry.access_count == 0


def test_slices_and_domains_are_distinct_entries(store: EntryStore, ac_name: str) -> None:
    whole = key(ac_name)
    day = key(ac_name, slice_key="2026-01-31")
    qm = EntryKey(ac_name, Domain.QM, "revenue", ("region",))
    for k in (whole, day, qm):
        store.publish(k, frame_for(k, rows=3), meta())
    assert {e.key for e in store.list_entries(ac_name)} == {whole, day, qm}
    assert [e.key for e in store.list_entries(ac_name, domain=Domain.QM)] == [qm]
    assert store.list_entries(ac_name, dataset_id="nothing") == []
    assert store.list_entries("other_ac") == []
    assert_frame_equal(store.scan(store.get(day)).collect(), frame_for(day, rows=3))  # type: ignore[arg-type]


def test_replacement_bumps_version_and_old_file_stays_readable_until_swept_after_grace(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    k = key(ac_name)
    old_frame, new_frame = frame_for(k, rows=10), frame_for(k, rows=20)
    first = store.publish(k, old_frame, meta())
    planned = store.scan(first)  # a LazyFrame planned before the replacement

    clock.advance(5)
    second = store.publish(k, new_frame, meta(family_fingerprint="fp-2"))
    assert (second.version, second.entry_id) == (2, first.entry_id)
    assert second.path != first.path and second.materialized_at == clock.now
    assert store.get(k) == second
    assert _pending_paths(store, ac_name) == [first.path.relative_to(store.data_dir).as_posix()]

    assert store.sweep(ac_name=ac_name).files_deleted == 0
    assert_frame_equal(planned.collect(), old_frame)

    clock.advance(GRACE_SECONDS + 1)
    report = store.sweep(ac_name=ac_name)
    assert (report.files_deleted, report.orphans_deleted) == (1, 0)
    assert report.bytes_freed == first.byte_size
    assert not first.path.exists() and _pending_paths(store, ac_name) == []
    assert_frame_equal(store.scan(second).collect(), new_frame)
    with pytest.raises(StorageError, match="is missing"):
        store.scan(first)


def test_record_access_counts_each_distinct_entry_once_and_survives_replacement(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    a, b = key(ac_name, "a"), key(ac_name, "b")
    ea, eb = store.publish_many([(a, frame_for(a), meta()), (b, frame_for(b), meta())])
    clock.advance(30)
    store.record_access([ea, ea, eb])
    store.record_access([ea])
    store.record_access([])
    got_a, got_b = store.get(a), store.get(b)
    assert got_a is not None and got_b is not None
    assert (got_a.access_count, got_b.access_count) == (2, 1)
    assert got_a.last_access_at == clock.now

    replaced = store.publish(a, frame_for(a, rows=3), meta())
    assert replaced.access_count == 2


def test_delete_retires_the_file_and_respects_pins(store: EntryStore, ac_name: str, clock: FakeClock) -> None:
    k = key(ac_name)
    entry = store.publish(k, frame_for(k), meta())
    store.set_pinned(k, True)
    with pytest.raises(InvalidRequestError, match="pinned"):
        store.delete(k)
    kept = store.get(k)
    assert kept is not None and kept.pinned

    replacement = store.publish(k, frame_for(k), meta())
    assert replacement.pinned, "a replacement keeps the pin"
    assert store.delete(k, force=True) is True
    assert store.get(k) is None and store.delete(k) is False
    assert entry.path.exists() and replacement.path.exists(), "retired files wait for the grace period"
    assert len(_pending_paths(store, ac_name)) == 2

    clock.advance(GRACE_SECONDS + 1)
    assert store.sweep(ac_name=ac_name).files_deleted == 2  # the replaced file and the deleted one
    assert list(store.data_dir.rglob("*.parquet")) == []


def test_set_pinned_on_unknown_key_names_the_key(store: EntryStore, ac_name: str) -> None:
    with pytest.raises(UnknownNameError, match=f"{ac_name}/METRIC/revenue"):
        store.set_pinned(key(ac_name), True)


def test_total_bytes_counts_current_files_and_can_leave_out_pinned(store: EntryStore, ac_name: str) -> None:
    a, b = key(ac_name, "a"), key(ac_name, "b")
    ea = store.publish(a, frame_for(a), meta())
    eb = store.publish(b, frame_for(b, rows=50), meta(pinned=True))
    store.publish(key("other_" + ac_name), frame_for(a), meta())
    assert store.total_bytes(ac_name) == ea.byte_size + eb.byte_size
    assert store.total_bytes(ac_name, evictable_only=True) == ea.byte_size
    assert store.total_bytes("nobody") == 0


def test_engine_meta_is_per_ac_and_overwritable(store: EntryStore, ac_name: str) -> None:
    assert store.get_meta(ac_name, "ac_fingerprint") is None
    store.set_meta(ac_name, "ac_fingerprint", "one")
    store.set_meta(ac_name, "ac_fingerprint", "two")
    store.set_meta("other_" + ac_name, "ac_fingerprint", "three")
    assert store.get_meta(ac_name, "ac_fingerprint") == "two"


def test_publish_many_commits_once_and_returns_entries_in_input_order(
    store: EntryStore, ac_name: str
) -> None:
    keys = [key(ac_name, f"f{i}") for i in (3, 1, 2)]
    commits: list[object] = []
    sa.event.listen(store._engine, "commit", commits.append)
    entries = store.publish_many([(k, frame_for(k), meta()) for k in keys])
    # One commit registers the files before they are written, ONE publishes every key.
    assert [e.key for e in entries] == keys and len(commits) == 2
    assert _pending_paths(store, ac_name) == [], "the publish claimed its registrations"


def test_publish_many_refuses_duplicate_keys_and_writes_nothing(store: EntryStore, ac_name: str) -> None:
    k = key(ac_name)
    with pytest.raises(InvalidRequestError, match="twice"):
        store.publish_many([(k, frame_for(k), meta()), (k, frame_for(k), meta())])
    assert not store.data_dir.exists() or list(store.data_dir.rglob("*")) == []


def test_unwritable_frame_leaves_no_file_and_no_registration_behind(store: EntryStore, ac_name: str) -> None:
    good, bad = key(ac_name, "good"), key(ac_name, "bad")
    unwritable = pl.DataFrame({"x": [object()]}, schema={"x": pl.Object})
    with pytest.raises(InvalidRequestError, match="Parquet"):
        store.publish_many([(good, frame_for(good), meta()), (bad, unwritable, meta())])
    assert [p for p in store.data_dir.rglob("*") if p.is_file()] == []
    assert store.list_entries(ac_name) == [] and _pending_paths(store, ac_name) == []


class _FailingStore(EntryStore):
    def _before_manifest_commit(self, paths: Sequence[Path]) -> None:
        assert all(path.is_file() for path in paths)
        raise RuntimeError("simulated crash before the manifest commit")


def test_crash_before_manifest_commit_leaves_a_consistent_store_and_registered_files_swept_later(
    make_store: Callable[..., EntryStore], ac_name: str, clock: FakeClock
) -> None:
    store, failing = make_store(), make_store(_FailingStore)
    k, other = key(ac_name), key(ac_name, "kept")
    kept = store.publish(other, frame_for(other), meta())
    with pytest.raises(RuntimeError, match="simulated"):
        failing.publish_many([(k, frame_for(k), meta()), (other, frame_for(other, rows=7), meta())])

    assert store.get(k) is None and store.get(other) == kept  # nothing half-published
    assert_frame_equal(store.scan(kept).collect(), frame_for(other))
    leftovers = [p for p in store.data_dir.rglob("*.parquet") if p != kept.path]
    assert len(leftovers) == 2
    assert len(_pending_paths(store, ac_name)) == 2, "registered as in flight before they were written"

    clock.advance(PAST_ORPHAN_AGE)
    assert store.sweep(ac_name=ac_name).files_deleted == 0, "a registered file may be an in-flight publish"
    leftover_bytes = sum(p.stat().st_size for p in leftovers)
    clock.advance(IN_FLIGHT_MAX_AGE.total_seconds())
    report = store.sweep(ac_name=ac_name)
    assert (report.files_deleted, report.orphans_deleted, report.bytes_freed) == (2, 0, leftover_bytes)
    assert not any(p.exists() for p in leftovers) and kept.path.exists()

    entry = store.publish(k, frame_for(k), meta())
    assert entry.version == 1
    assert_frame_equal(store.scan(entry).collect(), frame_for(k))


def test_sweep_deletes_only_old_unreferenced_store_files_of_the_given_ac(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    k = key(ac_name)
    live = store.publish(k, frame_for(k), meta())
    ac_dir = store.data_dir / ac_name
    orphan = ac_dir / "METRIC" / "revenue" / "x.parquet"
    temp = live.path.with_name(f".{live.path.name}.tmp-deadbeef")
    foreign = store.data_dir / "someone_else" / "y.parquet"
    unrelated = ac_dir / "README.txt"
    for path in (orphan, temp, foreign, unrelated):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"12345")
    old = (clock.now.timestamp() - 10 * PAST_ORPHAN_AGE,) * 2
    for path in (live.path, foreign, unrelated):
        os.utime(path, old)

    assert store.sweep(ac_name=ac_name).orphans_deleted == 0
    clock.advance(PAST_ORPHAN_AGE)
    report = store.sweep(ac_name=ac_name)
    assert (report.orphans_deleted, report.bytes_freed) == (2, 10)
    assert not orphan.exists() and not temp.exists()
    assert live.path.exists() and foreign.exists() and unrelated.exists()
    assert_frame_equal(store.scan(live).collect(), frame_for(k))


def test_scan_of_corrupt_or_missing_file_is_an_unreadable_entry_error_carrying_the_entry(
    store: EntryStore, ac_name: str
) -> None:
    k = key(ac_name)
    entry = store.publish(k, frame_for(k), meta())
    entry.path.write_bytes(b"not parquet at all")
    with pytest.raises(
        UnreadableEntryError, match=rf"{ac_name}/METRIC/revenue\[region\] v1 is unreadable"
    ) as info:
        store.scan(entry)
    assert info.value.entries == (entry,) and isinstance(info.value, StorageError)
    entry.path.unlink()
    with pytest.raises(UnreadableEntryError, match=r"is missing.*recomputes them on the next request"):
        store.scan(entry)


def test_invalid_publish_arguments_are_refused(store: EntryStore, ac_name: str) -> None:
    k = key(ac_name)
    with pytest.raises(InvalidRequestError, match="collect a LazyFrame"):
        store.publish(k, frame_for(k).lazy(), meta())  # type: ignore[arg-type]
    assert store.publish_many([]) == []


def test_naive_clock_is_refused(manifest_url: str, data_dir: Path, ac_name: str) -> None:
    with (
        EntryStore(manifest_url, data_dir, clock=lambda: datetime(2026, 1, 1)) as store,
        pytest.raises(InvalidRequestError, match="timezone-aware"),
    ):
        store.publish(key(ac_name), frame_for(key(ac_name)), meta())


def test_from_settings_uses_the_home_directory(tmp_path: Path, ac_name: str) -> None:
    settings = Settings(home=tmp_path / "home", file_grace_seconds=5)
    with EntryStore.from_settings(settings) as store:
        entry = store.publish(key(ac_name), frame_for(key(ac_name)), meta())
    assert (tmp_path / "home" / "engine" / "manifest.sqlite").is_file()
    assert entry.path.is_relative_to((tmp_path / "home" / "engine" / "data").resolve())
