"""Fixtures of the benchmarks: one generated dataset per session, as Parquet and (optionally) SQLite.

Environment (all optional):

- ``METRIC_PLATFORM_BENCH_ROWS``: transactions rows, default 1_000_000 (10_000_000 works: ~2-3
  minutes on 2 cores, ~4 s to generate, SQLite part skipped).
- ``METRIC_PLATFORM_BENCH_REPS``: timed repetitions per measurement, default 5.
- ``METRIC_PLATFORM_BENCH_SQLITE``: ``1`` forces the SQLite backend in, ``0`` leaves it out; by
  default it runs up to 2M rows only (loading takes ~9 s per million rows).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from metric_platform.backends.polars_backend import PolarsBackend
from metric_platform.backends.sql_backend import SqlBackend
from metric_platform.backends.sql_load import load_frames
from metric_platform.engine.engine import MetricEngine
from metric_platform.sample_data import TABLES, SampleSpec, generate, write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform_tests.benchmarks.report import Report, machine_info

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT_PATH = REPO_ROOT / "benchmark_reports" / "foundation.md"
RETAIL_AC = REPO_ROOT / "data" / "acs" / "retail.yaml"
DEFAULT_ROWS = 1_000_000
DEFAULT_REPS = 5
SQLITE_MAX_DEFAULT_ROWS = 2_000_000
# A fixed end date: the same row count gives byte-identical data on every run and every day.
END_DATE = date(2026, 11, 20)


@dataclass(frozen=True)
class BenchConfig:
    rows: int
    reps: int
    sqlite: bool


@dataclass(frozen=True)
class BenchData:
    ac: AnalyticalContext
    source: Path  # the directory of <table>.parquet files the AC reads

    def parquet(self, table: str) -> Path:
        return self.source / f"{table}.parquet"


def env_int(name: str, default: int) -> int:
    """A positive whole number from the environment, ``default`` when unset (shared by the benchmarks)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)  # int() accepts 10_000_000 as well as 10000000
    except ValueError:
        value = 0
    if value < 1:
        msg = f"{name}={raw!r} is not a positive whole number; set e.g. {name}={default}"
        raise pytest.UsageError(msg)
    return value


@pytest.fixture(scope="session")
def bench_config() -> BenchConfig:
    rows = env_int("METRIC_PLATFORM_BENCH_ROWS", DEFAULT_ROWS)
    reps = env_int("METRIC_PLATFORM_BENCH_REPS", DEFAULT_REPS)
    flag = os.environ.get("METRIC_PLATFORM_BENCH_SQLITE", "").strip()
    sqlite = rows <= SQLITE_MAX_DEFAULT_ROWS if flag == "" else flag == "1"
    return BenchConfig(rows=rows, reps=reps, sqlite=sqlite)


def run_header(reps: int) -> dict[str, str]:
    """The facts a report block starts with: when, on what, how busy, how many repetitions."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **machine_info(),
        # Other work on the machine skews absolute times (ratios less so): say how busy it was.
        "load average at start (1, 5, 15 min)": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
        "repetitions": f"median of {reps} after 1 warm-up (unless a table says otherwise)",
    }


@pytest.fixture(scope="session")
def bench_report(bench_config: BenchConfig) -> Report:
    return Report(REPORT_PATH, rows=bench_config.rows, header=run_header(bench_config.reps))


def write_bench_data(directory: Path, spec: SampleSpec) -> tuple[BenchData, float]:
    """Generate ``spec`` as Parquet into ``directory``; the retail AC reading it and the seconds taken."""
    start = time.perf_counter()
    write_parquet(generate(spec), directory)
    seconds = time.perf_counter() - start
    return BenchData(ac=load_ac(RETAIL_AC, source_path=directory), source=directory), seconds


@pytest.fixture(scope="session")
def bench_data(
    tmp_path_factory: pytest.TempPathFactory, bench_config: BenchConfig, bench_report: Report
) -> BenchData:
    source = tmp_path_factory.mktemp("bench_source")
    data, seconds = write_bench_data(source, SampleSpec(rows=bench_config.rows, end_date=END_DATE))
    bench_report.note("data", f"sample generated and written as Parquet in {seconds:.1f} s")
    return data


@pytest.fixture(scope="session")
def polars_backend(bench_data: BenchData) -> PolarsBackend:
    return PolarsBackend(bench_data.ac)


@pytest.fixture(scope="session")
def sqlite_backend(
    tmp_path_factory: pytest.TempPathFactory,
    bench_config: BenchConfig,
    bench_data: BenchData,
    bench_report: Report,
) -> Iterator[SqlBackend | None]:
    """The same data in a SQLite file, or None when the SQLite part is off (see the module doc)."""
    if not bench_config.sqlite:
        bench_report.note("sqlite", "skipped (above 2M rows; METRIC_PLATFORM_BENCH_SQLITE=1 forces it)")
        yield None
        return
    database = tmp_path_factory.mktemp("bench_sqlite") / "source.sqlite"
    frames = {table: pl.read_parquet(bench_data.parquet(table)) for table in TABLES}
    start = time.perf_counter()
    load_frames(f"sqlite:///{database}", frames)
    bench_report.note("sqlite", f"source loaded with load_frames in {time.perf_counter() - start:.1f} s")
    del frames
    backend = SqlBackend(bench_data.ac, f"sqlite:///{database}")
    yield backend
    backend.close()


@dataclass(frozen=True)
class Bench:
    """Everything a benchmark measures against, bundled so tests take two fixtures, not six."""

    config: BenchConfig
    data: BenchData
    report: Report
    polars: PolarsBackend
    sqlite: SqlBackend | None  # None when the SQLite part is off


@pytest.fixture(scope="session")
def bench(
    bench_config: BenchConfig,
    bench_data: BenchData,
    bench_report: Report,
    polars_backend: PolarsBackend,
    sqlite_backend: SqlBackend | None,
) -> Bench:
    return Bench(bench_config, bench_data, bench_report, polars_backend, sqlite_backend)


@pytest.fixture
def engine(tmp_path: Path, bench_data: BenchData) -> Iterator[MetricEngine]:
    """An engine over an empty store with its manifest in a SQLite file (the embedded default)."""
    settings = Settings(
        home=tmp_path / "home",
        engine_manifest_url=f"sqlite:///{tmp_path / 'manifest.sqlite'}",
        engine_data_dir=tmp_path / "entries",
    )
    with MetricEngine.open(bench_data.ac, settings) as opened:
        yield opened
