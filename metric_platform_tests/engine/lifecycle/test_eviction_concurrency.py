"""Evicting while other processes serve the same entries (issue 4): no failed serve, no wrong answer.

"Spawn" workers, each with its own MetricEngine on ONE store, serve fixed requests in a loop and
compare every answer with the backend's direct aggregate, while another process evicts everything
unpinned (``enforce_budget(to_bytes=0)``) over and over. The requests share their memoized slices
(a family's (store, day) slices serve an exact read, a rollup and a partial backend path), so
readers and the evictor meet on the same rows.

With the default grace period an evicted file stays on disk, so a LazyFrame planned before the
eviction still collects. The tiny-grace variant also sweeps right after each eviction, so files
vanish soon after: a reader that listed slices evicted meanwhile finds their file gone, and the
engine plans again from the manifest as it is now (its healing logs "entries changed while being
read"); the test asserts that happened and that every answer stayed right. A last, single-process
test makes a file vanish at one chosen point of a serve: while a partial serve that keeps some
memoized slices rebuilds a dimension map (the engine builds its maps before it opens those files).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DataAPIBackend, DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.sample_data import PROJECT_ID, TENANT_ID
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import (
    SAMPLE_WINDOW,
    CountingBackend,
    direct_metric,
    fixed_today,
    sorted_frame,
    write_ac_variant,
)

WORKERS = 3
SERVE_SECONDS = 3.0  # each worker's serving loop, after every process is ready
START_TIMEOUT = 90.0
DEFAULT_GRACE = float(Settings.model_fields["file_grace_seconds"].default)
# Seconds: longer than a serve takes from listing its slices to collecting them, unless it
# rebuilds a dimension map in between (EXTRACT_SECONDS).
TINY_GRACE = 0.2
EVICT_PAUSE = 0.5  # between the evictor's rounds: entries live long enough to be read
# Reading a dimension table (to rebuild an evicted dimension map) takes this long, as on a remote
# source: a rollup that lists its slices, then rebuilds the map, opens the slices a whole second
# after listing them, long enough for the evictor to have evicted them and the sweep to have
# deleted their file past the tiny grace.
EXTRACT_SECONDS = 1.0
WEEKS = DateWindow(date(2026, 10, 26), date(2026, 11, 15))  # three ISO weeks inside the sample
NOVEMBER = DateWindow(date(2026, 11, 1), date(2026, 11, 20))
Request = tuple[str, tuple[str, ...], DateWindow]
# Served by every worker: transaction_count's November and whole-window requests give a partial
# backend path (November memoized, the rest fetched) and a rollup over time; average_sale is not
# partition-invariant (its week slices serve only itself).
SHARED: tuple[Request, ...] = (
    ("transaction_count", ("store", "day"), NOVEMBER),
    ("transaction_count", ("store", "day"), SAMPLE_WINDOW),
    ("transaction_count", ("store", "month"), SAMPLE_WINDOW),
    ("average_sale", ("store", "week"), WEEKS),
)
# Rollups along dimension maps (QM entries, evicted too, rebuilt from the slow dimension tables).
MAP_READER: tuple[Request, ...] = (
    ("revenue", ("store", "day"), SAMPLE_WINDOW),
    ("revenue", ("region", "day"), SAMPLE_WINDOW),
    ("spend", ("campaign", "day"), WEEKS),
    ("spend", ("channel", "week"), WEEKS),
)
_REPLAN_MESSAGE = "changed while being read"


@dataclass(frozen=True)
class Spec:
    """What every process needs, as picklable paths and values."""

    ac_file: Path
    sample_dir: Path
    home: Path
    manifest_url: str | None
    grace: float
    sweep: bool
    report_dir: Path

    def settings(self) -> Settings:
        # Explicit fields, so a METRIC_PLATFORM_* variable in the environment cannot redirect a test.
        settings = Settings(
            home=self.home,
            engine_manifest_url=self.manifest_url,
            engine_data_dir=None,
            file_grace_seconds=self.grace,
        )
        return settings.for_project(TENANT_ID, PROJECT_ID)  # the retail AC's store


class _ReplanCounter(logging.Handler):
    """Counts the engine's "entries changed while being read; planning again" records."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.replans = 0

    def emit(self, record: logging.LogRecord) -> None:
        if _REPLAN_MESSAGE in record.getMessage():
            self.replans += 1


class SlowDimensionTables(CountingBackend):
    """A source whose table reads (``extract_to_lazyframe``: dimension maps) take EXTRACT_SECONDS."""

    def extract_to_lazyframe(self, schema: str) -> pl.LazyFrame:
        time.sleep(EXTRACT_SECONDS)
        return super().extract_to_lazyframe(schema)


def serving_worker(spec: Spec, barrier: Any, index: int) -> None:
    """Serve the requests in a loop for SERVE_SECONDS, every answer compared with its reference."""
    try:
        counter = _ReplanCounter()
        engine_log = logging.getLogger("metric_platform.engine.engine")
        engine_log.setLevel(logging.INFO)
        engine_log.addHandler(counter)
        ac = load_ac(spec.ac_file, source_path=spec.sample_dir)
        backend = SlowDimensionTables(backend_for(ac))
        requests = (*MAP_READER, *SHARED)
        expected = [direct_metric(backend, ac, f, grain, window=window) for f, grain, window in requests]
        engine = MetricEngine.open(ac, spec.settings(), today=fixed_today)
        order = [(i + index) % len(requests) for i in range(len(requests))]
        serves = hits = recomputed = rounds = 0
        barrier.wait(START_TIMEOUT)
        started = time.time()
        while rounds == 0 or time.time() - started < SERVE_SECONDS:
            for i in order:
                family, grain, window = requests[i]
                served = engine.serve_metric(family, grain, backend=backend, window=window)
                frame = served.frame.collect()
                assert_frame_equal(sorted_frame(frame, grain), expected[i], rel_tol=1e-9)
                serves += 1
                if served.provenance.path.backend_ranges:
                    recomputed += rounds > 0  # after the first round: something was evicted
                else:
                    hits += 1
            rounds += 1
        stats = {
            "start": started,
            "end": time.time(),
            "serves": serves,
            "hits": hits,
            "recomputed": recomputed,
            "replans": counter.replans,
        }
        (spec.report_dir / f"worker{index}.json").write_text(json.dumps(stats), encoding="utf-8")
        engine.close()
        backend.close()
    except BaseException:
        (spec.report_dir / f"worker{index}.error").write_text(traceback.format_exc(), encoding="utf-8")
        raise


def evicting_worker(spec: Spec, barrier: Any, stop: Any) -> None:
    """Evict every unpinned entry (and, with ``spec.sweep``, delete retired files past their grace)
    until ``stop`` is set; record when each round evicted something."""
    try:
        ac = load_ac(spec.ac_file, source_path=spec.sample_dir)
        engine = MetricEngine.open(ac, spec.settings(), today=fixed_today)
        evicted_at: list[float] = []
        units = files_deleted = 0
        barrier.wait(START_TIMEOUT)
        while not stop.is_set():
            report = engine.enforce_budget(to_bytes=0)
            if report.evicted:
                evicted_at.append(time.time())
                units += len(report.evicted)
            if spec.sweep:
                time.sleep(spec.grace + 0.05)  # the evicted files are past their grace: delete them
                files_deleted += engine.store.sweep(ac_name=ac.name).files_deleted
            time.sleep(EVICT_PAUSE)
        stats = {"evicted_at": evicted_at, "units": units, "files_deleted": files_deleted}
        (spec.report_dir / "evictor.json").write_text(json.dumps(stats), encoding="utf-8")
        engine.close()
    except BaseException:
        (spec.report_dir / "evictor.error").write_text(traceback.format_exc(), encoding="utf-8")
        raise


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def manifest_url(request: pytest.FixtureRequest) -> str | None:
    """The embedded SQLite manifest (None: under the home), or one on PostgreSQL."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


@pytest.mark.parametrize(
    ("grace", "sweep"), [(DEFAULT_GRACE, False), (TINY_GRACE, True)], ids=["grace", "tiny"]
)
def test_eviction_under_concurrent_serving_fails_no_serve(
    tmp_path: Path, sample_dir: Path, manifest_url: str | None, grace: float, sweep: bool
) -> None:
    # A unique AC name keeps this run apart from others sharing the PostgreSQL session database.
    ac_name = f"retail_{uuid.uuid4().hex[:8]}"
    ac_file = write_ac_variant(tmp_path / "acs", {"name: retail\n": f"name: {ac_name}\n"})
    report = tmp_path / "report"
    report.mkdir()
    spec = Spec(ac_file, sample_dir, tmp_path / "home", manifest_url, grace, sweep, report)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS + 1)
    stop = ctx.Event()
    workers = [ctx.Process(target=serving_worker, args=(spec, barrier, i)) for i in range(WORKERS)]
    evictor = ctx.Process(target=evicting_worker, args=(spec, barrier, stop))
    for proc in (*workers, evictor):
        proc.start()
    for proc in workers:
        proc.join(timeout=START_TIMEOUT + 60)
    stop.set()
    evictor.join(timeout=30)
    errors = {p.name: p.read_text(encoding="utf-8") for p in report.glob("*.error")}
    assert [p.exitcode for p in (*workers, evictor)] == [0] * (WORKERS + 1), errors

    stats = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(report.glob("worker*.json"))]
    evicted = json.loads((report / "evictor.json").read_text(encoding="utf-8"))
    assert len(stats) == WORKERS
    # Evictions landed while every worker was serving, and the workers both read memoized entries
    # and recomputed ones evicted under them.
    first, last = max(s["start"] for s in stats), min(s["end"] for s in stats)
    assert sum(first <= t <= last for t in evicted["evicted_at"]) >= 2, evicted
    assert all(s["serves"] >= len(SHARED) for s in stats), stats
    assert sum(s["hits"] for s in stats) > 0, stats
    assert sum(s["recomputed"] for s in stats) > 0, stats
    if sweep:
        assert evicted["files_deleted"] > 0, evicted
        assert sum(s["replans"] for s in stats) > 0, stats
    # What is left is consistent: every entry the manifest holds has its file.
    with EntryStore.from_settings(spec.settings()) as store:
        missing = [e.key.describe() for e in store.list_entries(ac_name) if not e.path.is_file()]
    assert missing == []


class EvictingOnFirstExtract(CountingBackend):
    """A source whose first table read lets ``evict`` run first: another process evicting and
    sweeping at that exact point of a serve."""

    def __init__(self, inner: DataAPIBackend, evict: Callable[[], None]) -> None:
        super().__init__(inner)
        self._evict: Callable[[], None] | None = evict

    def extract_to_lazyframe(self, schema: str) -> pl.LazyFrame:
        if self._evict is not None:
            evict, self._evict = self._evict, None
            evict()
        return super().extract_to_lazyframe(schema)


def test_slices_kept_by_a_partial_serve_vanishing_while_a_map_is_rebuilt_are_planned_again(
    ac: AnalyticalContext, settings: Settings, backend: CountingBackend
) -> None:
    engine = MetricEngine.open(ac, settings, today=fixed_today)
    # Another process's engine on the same manifest, whose evictions are deleted at the next sweep.
    evicting = MetricEngine(
        ac, EntryStore(settings.manifest_url, settings.data_dir, grace_seconds=0.0), today=fixed_today
    )
    first_half = DateWindow(WEEKS.start + timedelta(days=6), WEEKS.end)
    swept: list[int] = []

    def evict_and_sweep() -> None:
        evicting.enforce_budget(to_bytes=0)
        swept.append(evicting.store.sweep(ac_name=ac.name).files_deleted)

    try:
        engine.serve_metric("spend", ("campaign", "day"), backend=backend, window=first_half)
        source = EvictingOnFirstExtract(backend, evict_and_sweep)
        # (campaign, day) covers 15 of the 21 days: the serve keeps them, fetches the other six,
        # and rebuilds the campaign -> channel map (never built yet) before rolling up.
        served = engine.serve_metric("spend", ("channel", "week"), backend=source, window=WEEKS)
        frame = served.frame.collect()
    finally:
        engine.close()
        evicting.close()
    assert swept and swept[0] > 0, "the kept slices' file was deleted during the serve"
    expected = direct_metric(backend, ac, "spend", ("channel", "week"), window=WEEKS)
    assert_frame_equal(sorted_frame(frame, ("channel", "week")), expected, rel_tol=1e-9)
