"""Several processes ("spawn") with their own MetricEngine on ONE store profile and serve the same
keys at the same moment: none fails, and the store ends with one correct, readable entry per key."""

from __future__ import annotations

import multiprocessing
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import AggregateRequest
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain
from metric_platform.semantics.loader import load_ac
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import (
    METRIC_FAMILIES,
    QM_KEYS,
    direct_qm,
    make_settings,
    sorted_by_anchor,
    write_ac_variant,
)

WORKERS = 4
ROUNDS = 2
START_TIMEOUT = 60.0


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
        backend = backend_for(ac)
        engine = MetricEngine.open(ac, make_settings(spec.home, spec.manifest_url))
        schemas = list(ac.schemas)
        families = list(ac.families.values())
        barrier.wait(START_TIMEOUT)
        started = time.time()
        for _ in range(ROUNDS):
            # A different order per worker, so workers collide on different keys at different times.
            for schema in schemas[index % len(schemas) :] + schemas[: index % len(schemas)]:
                profile = engine.table_profile(schema, backend=backend)
                assert [c.column for c in profile.columns] == list(ac.schema(schema).columns)
            for family in families[index:] + families[:index]:
                frame = engine.serve(Domain.METRIC, family.name, family.base_grain, backend=backend).collect()
                assert frame.columns == [*family.base_grain, family.name]
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
        assert Counter(e.key.domain for e in entries) == {Domain.QM: QM_KEYS, Domain.METRIC: METRIC_FAMILIES}
        for entry in entries:
            stored = store.scan(entry).collect()
            if entry.key.domain is Domain.QM:
                assert entry.key.dataset_id == "column_profile"
                assert_frame_equal(stored, direct_qm(backend, *entry.key.anchor))
            else:
                family = ac.family(entry.key.dataset_id)
                assert entry.key.anchor == ac.canonical_grain(family.base_grain)
                expected = backend.aggregate(AggregateRequest(family, entry.key.anchor)).collect()
                assert_frame_equal(sorted_by_anchor(stored, entry), sorted_by_anchor(expected, entry))
    finally:
        store.close()
        backend.close()
