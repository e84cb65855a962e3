"""Fixtures of the correctness gate: the retail sample (3000 rows over 40 days) as Parquet, as a
SQLite file and in PostgreSQL, the retail AC pointed at each, and engines with a fixed today.

The SQL copies use tables prefixed ``gate_`` so they never collide with the other suites' tables in
the session's PostgreSQL database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.backends.sql_load import load_frames
from metric_platform.engine.engine import MetricEngine
from metric_platform.sample_data import TABLES, SampleSpec, generate, write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform_tests.engine.conftest import RETAIL_YAML, make_settings, write_ac_variant

GATE_SPEC = SampleSpec(rows=3000, days=40, end_date=dt.date(2026, 11, 20))
TODAY = dt.date(2026, 11, 21)
PG_ENV = "METRIC_PLATFORM_GATE_PG_URL"
BACKEND_KINDS = ["polars", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_SOURCE = "kind: parquet"
_PATH = "path: ../sample"


@dataclass(frozen=True)
class Sample:
    frames: dict[str, pl.DataFrame]
    directory: Path  # <table>.parquet files: what the Polars backend and DuckDB read

    def parquet(self, table: str) -> Path:
        return self.directory / f"{table}.parquet"


@pytest.fixture(scope="session")
def gate_sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    directory = tmp_path_factory.mktemp("gate-sample")
    frames = generate(GATE_SPEC)
    write_parquet(frames, directory)
    return Sample(frames, directory)


def _sql_ac(directory: Path, source: str) -> Path:
    """The retail AC reading ``gate_<table>`` tables from the SQL source ``source``."""
    replacements = {_SOURCE: source, _PATH: ""}
    replacements.update({f"table: {t}": f"table: gate_{t}" for t in TABLES})
    return write_ac_variant(directory, replacements)


def _sql_frames(sample: Sample) -> dict[str, pl.DataFrame]:
    return {f"gate_{t}": frame for t, frame in sample.frames.items()}


@pytest.fixture(scope="session")
def sqlite_ac(gate_sample: Sample, tmp_path_factory: pytest.TempPathFactory) -> AnalyticalContext:
    directory = tmp_path_factory.mktemp("gate-sqlite")
    database = directory / "retail.sqlite"
    load_frames(f"sqlite:///{database}", _sql_frames(gate_sample))
    return load_ac(_sql_ac(directory, f"kind: sqlite\n  path: {database}"))


@pytest.fixture(scope="session")
def postgres_ac(
    gate_sample: Sample, pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AnalyticalContext:
    load_frames(pg_url, _sql_frames(gate_sample))
    return load_ac(_sql_ac(tmp_path_factory.mktemp("gate-postgres"), f"kind: postgres\n  url_env: {PG_ENV}"))


@pytest.fixture(scope="session")
def parquet_ac(gate_sample: Sample) -> AnalyticalContext:
    return load_ac(RETAIL_YAML, source_path=gate_sample.directory)


@dataclass(frozen=True)
class Source:
    """One backend over the gate sample, with the AC it was opened for."""

    kind: str
    ac: AnalyticalContext
    backend: DataAPIBackend


@pytest.fixture(params=BACKEND_KINDS)
def source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Source]:
    kind: str = request.param
    if kind == "postgres":
        monkeypatch.setenv(PG_ENV, request.getfixturevalue("pg_url"))
    ac: AnalyticalContext = request.getfixturevalue(f"{'parquet' if kind == 'polars' else kind}_ac")
    backend = backend_for(ac)
    assert backend.name == kind
    yield Source(kind, ac, backend)
    backend.close()


OpenEngine = Callable[..., MetricEngine]


@pytest.fixture
def open_engine(tmp_path: Path) -> Iterator[OpenEngine]:
    """``open_engine(ac, home=None)``: an engine on a fresh home under this test's tmp dir, or on
    the named home (a second engine over what a first one memoized); all closed afterwards."""
    opened: list[MetricEngine] = []

    def open_(ac: AnalyticalContext, home: str | None = None) -> MetricEngine:
        settings = make_settings(tmp_path / (home or f"home{len(opened)}"))
        engine = MetricEngine.open(ac, settings, today=lambda: TODAY)
        opened.append(engine)
        return engine

    yield open_
    for engine in opened:
        engine.close()
