"""Several processes ("spawn") with their own MetricEngine on ONE store profile and serve the same
keys at the same moment: none fails, and the store ends with one correct, readable entry per key.

METRIC keys are day slices: each worker first serves its own, overlapping window (so publishes of
different ranges race on the days they share), then the whole sample window (reading what others
memoized and fetching only the rest); a second round must come entirely from memory. A miss is
fetched at the family's native grain (region by store, by day) and rolled up with a verified
dimension map, so the keys are those slices, the cache_hint targets, and the maps (QM fd_map)."""

from __future__ import annotations

import multiprocessing
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain
from metric_platform.engine.store.records import Entry
from metric_platform.semantics.loader import load_ac
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import (
    METRIC_FAMILIES,
    QM_KEYS,
    SAMPLE_WINDOW,
    CountingBackend,
    direct_metric,
    direct_qm,
    fixed_today,
    make_settings,
    miss_grains,
    miss_maps,
    read_slices,
    write_ac_variant,
)

WORKERS = 4
ROUNDS = 2
START_TIMEOUT = 60.0


def own_window(index: int) -> DateWindow:
    """12 days of the sample window, each worker's 6 days later than the previous one's."""
    start = SAMPLE_WINDOW.start + timedelta(days=6 * index)
    return DateWindow(start, start + timedelta(days=11))


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs, as picklable paths and strings."""

    ac_file: Path
    sample_dir: Path
    home: Path
    manifest_url: str | None
    report_dir: Path


def engine_worker(spec: WorkerSpec, barrier: Any, index: int) -> None:
    """Open an engine, wait for every sibling, then profile every schema and serve every family."""
    report = spec.report_dir
    try:
        ac = load_ac(spec.ac_file, source_path=spec.sample_dir)
        backend = CountingBackend(backend_for(ac))
        engine = MetricEngine.open(ac, make_settings(spec.home, spec.manifest_url), today=fixed_today)
        schemas = list(ac.schemas)
        families = list(ac.families.values())
        barrier.wait(START_TIMEOUT)
        started = time.time()
        for round_ in range(ROUNDS):
            backend.aggregates.clear()
            # A different order per worker, so workers collide on different keys at different times.
            for schema in schemas[index % len(schemas) :] + schemas[: index % len(schemas)]:
                profile = engine.table_profile(schema, backend=backend)
                assert [c.column for c in profile.columns] == list(ac.schema(schema).columns)
            for family in families[index:] + families[:index]:
                for window in (own_window(index), SAMPLE_WINDOW):
                    frame = engine.serve(
                        Domain.METRIC, family.name, family.base_grain, backend=backend, window=window
                    ).collect()
                    assert frame.columns == [*family.base_grain, family.name]
            if round_ > 0:
                assert backend.aggregates == [], "the second round must be served from the slices"
        (report / f"{index}.span").write_text(f"{started} {time.time()}", encoding="utf-8")
        engine.close()
        backend.close()
    except BaseException:
        (report / f"{index}.error").write_text(traceback.format_exc(), encoding="utf-8")
        raise


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """One store for every worker: the embedded SQLite manifest, or one on PostgreSQL."""
    if request.param == "sqlite":
        return make_settings(tmp_path / "home")
    return make_settings(tmp_path / "home", str(request.getfixturevalue("pg_url")))


def test_concurrent_engines_end_with_one_correct_entry_per_key(
    tmp_path: Path, sample_dir: Path, shared_settings: Settings
) -> None:
    # A unique AC name keeps this run apart from others sharing the PostgreSQL session database.
    ac_name = f"retail_{uuid.uuid4().hex[:8]}"
    ac_file = write_ac_variant(tmp_path / "acs", {"name: retail\n": f"name: {ac_name}\n"})
    report = tmp_path / "report"
    report.mkdir()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    spec = WorkerSpec(ac_file, sample_dir, shared_settings.home, shared_settings.engine_manifest_url, report)
    procs = [ctx.Process(target=engine_worker, args=(spec, barrier, index)) for index in range(WORKERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    errors = {p.name: p.read_text(encoding="utf-8") for p in report.glob("*.error")}
    assert [p.exitcode for p in procs] == [0] * WORKERS, errors
    spans = [tuple(map(float, p.read_text().split())) for p in sorted(report.glob("*.span"))]
    assert len(spans) == WORKERS
    assert max(start for start, _ in spans) < min(end for _, end in spans), "the workers did not overlap"

    ac = load_ac(ac_file, source_path=sample_dir)
    backend = backend_for(ac)
    store = EntryStore.from_settings(shared_settings)
    try:
        entries = store.list_entries(ac_name)
        keys = Counter(e.key for e in entries)
        assert all(count == 1 for count in keys.values()), keys
        # The keys the policy gives: every day of every grain a family's miss memoizes, and the
        # dimension maps its rollups verified.
        days = [SAMPLE_WINDOW.start + timedelta(days=i) for i in range(SAMPLE_WINDOW.days)]
        grains = {(f.name, g) for f in ac.families.values() for g in miss_grains(ac, f.name, f.base_grain)}
        maps = {edge for f in ac.families.values() for edge in miss_maps(ac, f.name, f.base_grain)}
        assert len(grains) == METRIC_FAMILIES + 1, "revenue keeps its (region, day) cache_hint too"
        assert maps == {("store", "region")}
        expected_keys: set[tuple[Domain, str, tuple[str, ...], date | None]] = {
            (Domain.METRIC, name, grain, day) for name, grain in grains for day in days
        }
        expected_keys |= {
            (Domain.QM, "column_profile", (s, c), None) for s in ac.schemas for c in ac.schema(s).columns
        }
        expected_keys |= {(Domain.QM, "fd_map", edge, None) for edge in maps}
        assert {(k.domain, k.dataset_id, k.anchor, k.slice_day) for k in keys} == expected_keys
        assert Counter(e.key.domain for e in entries) == {
            Domain.QM: QM_KEYS + len(maps),
            Domain.METRIC: len(grains) * SAMPLE_WINDOW.days,
        }
        by_grain: dict[tuple[str, tuple[str, ...]], list[Entry]] = {}
        for entry in entries:
            assert entry.path.is_file(), entry.key.describe()
            if entry.key.dataset_id == "column_profile":
                assert_frame_equal(store.scan(entry).collect(), direct_qm(backend, *entry.key.anchor))
            elif entry.key.dataset_id == "fd_map":
                finer, coarser = entry.key.anchor  # both bound on stores (store_id, region)
                direct_map = (
                    backend.extract_to_lazyframe("stores")
                    .select(
                        pl.col(ac.dimension(finer).columns["stores"]).alias(finer),
                        pl.col(ac.dimension(coarser).columns["stores"]).alias(coarser),
                    )
                    .unique()
                    .sort(finer, coarser, nulls_last=True)
                    .collect()
                )
                assert_frame_equal(store.scan(entry).collect(), direct_map)
            else:
                by_grain.setdefault((entry.key.dataset_id, entry.key.anchor), []).append(entry)
        assert set(by_grain) == grains
        for (name, grain), slices in by_grain.items():
            expected = direct_metric(backend, ac, name, grain, window=SAMPLE_WINDOW, with_counts=True)
            assert_frame_equal(read_slices(store, slices), expected)
    finally:
        store.close()
        backend.close()
