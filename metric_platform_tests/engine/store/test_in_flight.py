"""A publish's files are registered before they exist, so no sweep takes them before the commit."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.engine.store import Entry, EntryStore, SweepReport, in_flight, layout, sweeper
from metric_platform.engine.store.in_flight import IN_FLIGHT_MAX_AGE, FilesReclaimedError
from metric_platform.engine.store.layout import entry_dir, new_file_name, write_parquet_atomically
from metric_platform_tests.engine.store._support import days, frame_for, key, meta, slice_base, slice_frame
from metric_platform_tests.engine.store.conftest import FakeClock
from metric_platform_tests.engine.store.test_entry_store import _pending_paths

HOURS = 3600.0


class _HeldStore(EntryStore):
    """Runs ``during`` between writing a publish's files and its manifest transaction."""

    during: Callable[[Sequence[Path]], None] | None = None

    def _before_manifest_commit(self, paths: Sequence[Path]) -> None:
        if self.during is not None:
            self.during(paths)


@pytest.fixture
def zero_grace(manifest_url: str, data_dir: Path, clock: FakeClock) -> Iterator[EntryStore]:
    """A store on the same manifest and clock that sweeps with no grace at all."""
    with EntryStore(manifest_url, data_dir, grace_seconds=0, clock=clock) as store:
        yield store


def _age(paths: Sequence[Path], clock: FakeClock, hours: float) -> None:
    """Make files look ``hours`` old, as after a very slow batch of writes."""
    then = clock.now.timestamp() - hours * HOURS
    for path in paths:
        os.utime(path, (then, then))


def _publish(store: EntryStore, ac_name: str, kind: str) -> tuple[list[Entry], pl.DataFrame]:
    if kind == "publish_many":
        keys = [key(ac_name, f"f{i}") for i in range(3)]
        entries = store.publish_many([(k, frame_for(k), meta()) for k in keys])
        return entries, pl.concat([frame_for(k) for k in keys])
    four = days(0, 4)
    frame = slice_frame(four, rows=2)
    return store.publish_slices(
        slice_base(ac_name), frame, slice_column="day", slices=four, meta=meta()
    ), frame


@pytest.mark.parametrize("kind", ["publish_many", "publish_slices"])
def test_a_publish_held_between_its_writes_and_its_commit_keeps_its_files_through_a_zero_grace_sweep(
    make_store: Callable[..., EntryStore], zero_grace: EntryStore, ac_name: str, clock: FakeClock, kind: str
) -> None:
    held = make_store(_HeldStore)
    assert isinstance(held, _HeldStore)
    reports: list[SweepReport] = []

    def sweep_meanwhile(paths: Sequence[Path]) -> None:
        _age(paths, clock, hours=5)
        clock.advance(5 * HOURS)  # far past the grace (0) and the minimum orphan age
        reports.extend([zero_grace.sweep(ac_name=ac_name), zero_grace.sweep()])

    held.during = sweep_meanwhile
    entries, frame = _publish(held, ac_name, kind)

    assert reports == [SweepReport(0, 0, 0)] * 2
    assert all(entry.path.is_file() for entry in entries)
    got = held.scan_slices(entries).collect()
    assert_frame_equal(got.sort(got.columns), frame.sort(frame.columns))
    assert _pending_paths(held, ac_name) == [], "the commit claimed the registrations"
    clock.advance(IN_FLIGHT_MAX_AGE.total_seconds())
    assert zero_grace.sweep() == SweepReport(0, 0, 0), "referenced files are never swept"


def test_a_publish_slower_than_the_in_flight_limit_fails_instead_of_naming_deleted_files(
    make_store: Callable[..., EntryStore], zero_grace: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    held = make_store(_HeldStore)
    assert isinstance(held, _HeldStore)
    k = key(ac_name)
    first = held.publish(k, frame_for(k, rows=5), meta())
    reclaimed: list[int] = []

    def outlive_the_registration(paths: Sequence[Path]) -> None:
        clock.advance(IN_FLIGHT_MAX_AGE.total_seconds() + 1)
        reclaimed.append(zero_grace.sweep(ac_name=ac_name).files_deleted)

    held.during = outlive_the_registration
    with pytest.raises(FilesReclaimedError, match=r"took longer than 24 hours.*nothing was published"):
        held.publish_many([(k, frame_for(k), meta()), (key(ac_name, "other"), frame_for(k), meta())])

    assert reclaimed == [2]
    assert held.list_entries(ac_name) == [first], "the older version stays, nothing half-published"
    assert sorted(held.data_dir.rglob("*.parquet")) == [first.path]
    assert _pending_paths(held, ac_name) == []


def test_the_orphan_pass_keeps_a_file_registered_and_written_while_it_walks(
    store: EntryStore, zero_grace: EntryStore, ac_name: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = key(ac_name)
    store.publish(k, frame_for(k), meta())
    late: list[Path] = []
    real_walk = layout.candidate_files

    def walk_while_a_publish_writes(root: Path) -> Iterator[Path]:
        # A publish registers and writes its (slowly written, old-looking) file as the walk starts.
        relative = (entry_dir(k) / new_file_name(clock.now)).as_posix()
        in_flight.register(store._engine, {relative: ac_name}, clock.now)
        path = store.data_dir.joinpath(*relative.split("/"))
        write_parquet_atomically(frame_for(k), path)
        _age([path], clock, hours=5)
        late.append(path)
        yield from real_walk(root)

    monkeypatch.setattr(sweeper, "candidate_files", walk_while_a_publish_writes)
    clock.advance(HOURS)
    assert zero_grace.sweep(ac_name=ac_name).orphans_deleted == 0
    assert late[0].is_file(), "the walk saw the file, so the manifest read after it knows the registration"


def test_a_temp_file_is_kept_while_its_final_path_is_in_flight(
    store: EntryStore, zero_grace: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    relative = (entry_dir(key(ac_name)) / new_file_name(clock.now)).as_posix()
    in_flight.register(store._engine, {relative: ac_name}, clock.now)
    final = store.data_dir.joinpath(*relative.split("/"))
    temp = final.with_name(f".{final.name}.tmp-0123abcd")
    temp.parent.mkdir(parents=True)
    temp.write_bytes(b"half written")
    _age([temp], clock, hours=5)
    clock.advance(HOURS)

    assert zero_grace.sweep(ac_name=ac_name) == SweepReport(0, 0, 0) and temp.exists()
    in_flight.release(store._engine, [relative])  # the write failed or crashed: now it is garbage
    assert zero_grace.sweep(ac_name=ac_name) == SweepReport(0, 1, len(b"half written"))
    assert not temp.exists()
