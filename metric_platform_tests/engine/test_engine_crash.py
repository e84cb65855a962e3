"""A crash between writing an entry's Parquet file and committing the manifest: nothing half-published
is ever served, the next serve recomputes correctly, and the sweep removes the orphaned files."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.factory import backend_for
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.serving.types import PathKind
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import (
    RETAIL_YAML,
    SAMPLE_WINDOW,
    CountingBackend,
    direct_metric,
    direct_qm,
    entries_of,
    make_settings,
    orphan_files,
    read_slices,
    slices_of,
    sorted_frame,
    sweeping_store,
)

CRASH_EXIT_CODE = 1


class SimulatedCrash(Exception):
    """Raised by the patched hook, standing in for a process dying before the manifest commit."""


def _crash(self: EntryStore, paths: Sequence[Path]) -> None:
    msg = f"simulated crash after writing {len(paths)} file(s)"
    raise SimulatedCrash(msg)


def assert_no_dangling_rows(engine: MetricEngine) -> None:
    for entry in engine.entries():
        assert entry.path.is_file(), f"{entry.key.describe()} points at a missing file"


def assert_sweep_removes(settings: Settings, ac_name: str, orphans: set[Path]) -> None:
    with sweeping_store(settings) as store:
        report = store.sweep(ac_name=ac_name)
        referenced = [entry.path for entry in store.list_entries(ac_name)]
    # A crashed publish's files were registered in flight before they were written: the sweep takes
    # them once the registration falls due (files_deleted), or as orphans when none was left.
    assert report.files_deleted + report.orphans_deleted == len(orphans)
    assert not any(path.exists() for path in orphans)
    assert all(path.is_file() for path in referenced), "the sweep must keep every referenced file"


def test_a_crashed_table_profile_publishes_nothing_and_is_recomputed(
    monkeypatch: pytest.MonkeyPatch,
    engine: MetricEngine,
    backend: CountingBackend,
    settings: Settings,
    ac: AnalyticalContext,
) -> None:
    engine.table_profile("stores", backend=backend)
    committed = {e.key: e for e in engine.entries()}

    monkeypatch.setattr(EntryStore, "_before_manifest_commit", _crash)
    with pytest.raises(SimulatedCrash):
        engine.table_profile("transactions", backend=backend)
    monkeypatch.undo()

    assert {e.key: e for e in engine.entries()} == committed, "no row for the crashed keys"
    assert_no_dangling_rows(engine)
    orphans = orphan_files(settings, ac.name)
    assert len(orphans) == len(ac.schema("transactions").columns), "the files were written before the crash"

    profile = engine.table_profile("transactions", backend=backend)
    assert backend.extracts == ["stores", "transactions", "transactions"]
    assert profile.row_count == 3000
    for entry in entries_of(engine, Domain.QM):
        assert entry.version == 1
        assert_frame_equal(engine.store.scan(entry).collect(), direct_qm(backend.inner, *entry.key.anchor))
    assert_sweep_removes(settings, ac.name, orphans)


def test_a_crashed_metric_serve_publishes_nothing_and_is_recomputed(
    monkeypatch: pytest.MonkeyPatch,
    engine: MetricEngine,
    backend: CountingBackend,
    settings: Settings,
    ac: AnalyticalContext,
) -> None:
    grain = ac.family("revenue").base_grain
    monkeypatch.setattr(EntryStore, "_before_manifest_commit", _crash)
    with pytest.raises(SimulatedCrash):
        engine.serve(Domain.METRIC, "revenue", grain, backend=backend, window=SAMPLE_WINDOW)
    monkeypatch.undo()

    assert engine.entries() == [], "no slice row for the crashed serve"
    orphans = orphan_files(settings, ac.name)
    # The first publish, of the native (store, day) days, crashed: the rollup never ran.
    assert len(orphans) == 1, "the slices of one computed range share one file"

    served = engine.serve_metric("revenue", grain, backend=backend, window=SAMPLE_WINDOW)
    assert served.provenance.path.kind is PathKind.BACKEND and served.provenance.memoized
    expected = direct_metric(backend.inner, ac, "revenue", grain, window=SAMPLE_WINDOW)
    assert_frame_equal(sorted_frame(served.frame.collect(), grain), expected)
    # Now kept: the (store, day) days fetched, the (region, day) cache_hint target, and the map.
    (fd_map,) = entries_of(engine, Domain.QM)
    assert (fd_map.key.dataset_id, fd_map.key.anchor, fd_map.version) == ("fd_map", ("store", "region"), 1)
    for anchor in (("store", "day"), grain):
        slices = slices_of(engine.store, ac, "revenue", anchor)
        assert len(slices) == SAMPLE_WINDOW.days
        assert all(e.version == 1 and e.path not in orphans for e in slices)
        counted = direct_metric(backend.inner, ac, "revenue", anchor, window=SAMPLE_WINDOW, with_counts=True)
        assert_frame_equal(read_slices(engine.store, slices), counted)
    assert len(entries_of(engine, Domain.METRIC)) == 2 * SAMPLE_WINDOW.days
    assert len(backend.aggregates) == 2
    assert_no_dangling_rows(engine)
    assert_sweep_removes(settings, ac.name, orphans)


def crash_worker(sample_dir: str, home: str, marker: str) -> None:
    """Profile transactions in a process that dies inside the hook, as a killed process would."""

    def die(self: EntryStore, paths: Sequence[Path]) -> None:
        Path(marker).write_text("\n".join(str(p) for p in paths), encoding="utf-8")
        sys.stdout.flush()
        os._exit(CRASH_EXIT_CODE)

    EntryStore._before_manifest_commit = die  # type: ignore[method-assign]
    ac = load_ac(RETAIL_YAML, source_path=Path(sample_dir))
    engine = MetricEngine.open(ac, make_settings(Path(home)))
    engine.table_profile("transactions", backend=backend_for(ac))
    os._exit(3)  # unreachable when the hook fires


def test_a_process_killed_before_the_manifest_commit_leaves_only_sweepable_orphans(
    tmp_path: Path, sample_dir: Path, settings: Settings, ac: AnalyticalContext, backend: CountingBackend
) -> None:
    marker = tmp_path / "crashed-with"
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=crash_worker, args=(str(sample_dir), str(settings.home), str(marker)))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == CRASH_EXIT_CODE
    written = {Path(line) for line in marker.read_text(encoding="utf-8").splitlines()}
    assert len(written) == len(ac.schema("transactions").columns)

    engine = MetricEngine.open(ac, settings)
    try:
        assert engine.entries() == []
        assert orphan_files(settings, ac.name) == written
        assert all(path.is_file() for path in written)

        profile = engine.table_profile("transactions", backend=backend)
        assert backend.extracts == ["transactions"]
        assert [c.row_count for c in profile.columns] == [3000] * len(profile.columns)
        for entry in entries_of(engine, Domain.QM):
            assert entry.path not in written
            assert_frame_equal(
                engine.store.scan(entry).collect(), direct_qm(backend.inner, *entry.key.anchor)
            )
        assert_no_dangling_rows(engine)
    finally:
        engine.close()
    assert_sweep_removes(settings, ac.name, written)


def test_missing_and_corrupt_entry_files_are_dropped_and_recomputed(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext, settings: Settings
) -> None:
    window = SAMPLE_WINDOW
    first = engine.serve_metric("revenue", ("region", "day"), backend=backend, window=window).frame.collect()
    engine.table_profile("stores", backend=backend)
    data = settings.data_dir / ac.name
    for path in (data / "METRIC").rglob("*.parquet"):
        path.unlink()  # deleted behind the store's back
    for path in (data / "QM").rglob("*.parquet"):
        path.write_bytes(b"not parquet")  # damaged behind the store's back

    served = engine.serve_metric("revenue", ("region", "day"), backend=backend, window=window)
    assert served.provenance.path.kind is PathKind.BACKEND
    assert_frame_equal(
        served.frame.collect().sort("region", "day", nulls_last=True),
        first.sort("region", "day", nulls_last=True),
        rel_tol=1e-12,
    )
    profile = engine.table_profile("stores", backend=backend)
    assert profile.row_count == 24
    assert_no_dangling_rows(engine)
    again = engine.serve_metric("revenue", ("region", "day"), backend=backend, window=window)
    assert again.provenance.path.kind is PathKind.EXACT
