"""Fixtures of the engine-backed works' tests: the retail AC over a small sample, and the stores of
one test, chosen through the environment as an installation chooses them.

``stores`` is bound to an embedded home (SQLite manifest and platform database under it) and to
PostgreSQL (``METRIC_PLATFORM_ENGINE_MANIFEST_URL`` and ``METRIC_PLATFORM_PLATFORM_DB_URL`` both
naming a fresh schema of the session database, dropped afterwards, so every table starts absent).
The Parquet entries and the spool live under the home in both cases.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.execution.results import ExecutionResult
from metric_platform.sample_data import PROJECT_ID, TENANT_ID, generate, write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform.works.runner import batch_context, run_work
from metric_platform.works.workspace import EngineWorkspace
from metric_platform_tests.engine.conftest import RETAIL_YAML, SAMPLE_SPEC, TODAY
from metric_platform_tests.pg_schema import fresh_pg_schema
from metric_platform_tests.works.state import database_urls

# Served "on" TODAY (2026-11-21) the hold-off of 3 days leaves 2026-11-19/20 provisional; on LATER
# both crossed the cutoff and are stale: what a refresh recomputes.
LATER = dt.date(2026, 11, 23)
WEEK = (dt.date(2026, 11, 1), dt.date(2026, 11, 7))
LAST_WEEK = (dt.date(2026, 11, 14), dt.date(2026, 11, 20))  # its last two days are provisional on TODAY
SERVE = {"family": "revenue", "anchor": ["region", "day"]}
PROVISIONAL_SERVE = {"family": "conversions", "anchor": ["store", "day"]}
QUERY = {"metrics": ["revenue", "spend"], "grain": ["region"], "derive": ["roas=revenue/spend"]}

_ENV = ("HOME", "ENGINE_MANIFEST_URL", "PLATFORM_DB_URL", "ENGINE_DATA_DIR", "INSTALLATION_FILE")


@pytest.fixture(scope="package")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("works-sample")
    write_parquet(generate(SAMPLE_SPEC), directory)
    return directory


@pytest.fixture(scope="package")
def ac(sample_dir: Path) -> AnalyticalContext:
    return load_ac(RETAIL_YAML, source_path=sample_dir)


@dataclass(frozen=True)
class Stores:
    """Where one test's engine and platform stores live (``settings`` read from the environment)."""

    home: Path
    settings: Settings

    @property
    def urls(self) -> tuple[str, ...]:
        return database_urls(self.settings)

    def workspace(
        self,
        ac: AnalyticalContext,
        *,
        today: dt.date | None = None,
        open_backend: Callable[[AnalyticalContext], DataAPIBackend] | None = None,
    ) -> EngineWorkspace:
        """The AC's workspace on these stores, its clock at ``today`` (default TODAY)."""
        workspace = EngineWorkspace(ac, self.settings, today=today or TODAY)
        return workspace if open_backend is None else replace(workspace, open_backend=open_backend)

    def run(
        self,
        ac: AnalyticalContext,
        work: str,
        params: Mapping[str, Any],
        *,
        days: tuple[dt.date, dt.date] | None = None,
        today: dt.date | None = None,
        dry_run: bool = False,
        run_id: str | None = None,
    ) -> ExecutionResult:
        """``work`` executed through the runner, as a manual batch run."""
        workspace = self.workspace(ac, today=today)
        context = batch_context(workspace, work, params, days=days, dry_run=dry_run, run_id=run_id)
        return run_work(workspace, context)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stores]:
    for name in _ENV:
        monkeypatch.delenv(f"METRIC_PLATFORM_{name}", raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("METRIC_PLATFORM_HOME", str(home))
    if request.param == "sqlite":
        yield Stores(home, _retail_project())
        return
    with fresh_pg_schema(str(request.getfixturevalue("pg_url"))) as url:
        monkeypatch.setenv("METRIC_PLATFORM_ENGINE_MANIFEST_URL", url)
        monkeypatch.setenv("METRIC_PLATFORM_PLATFORM_DB_URL", url)
        yield Stores(home, _retail_project())


@pytest.fixture
def sqlite_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stores:
    """The embedded home alone, for tests whose point is not the dialect."""
    for name in _ENV:
        monkeypatch.delenv(f"METRIC_PLATFORM_{name}", raising=False)
    monkeypatch.setenv("METRIC_PLATFORM_HOME", str(tmp_path / "home"))
    return Stores(tmp_path / "home", _retail_project())


def _retail_project() -> Settings:
    """The environment's settings projected on the retail AC's project: their ``manifest_url`` and
    ``data_dir`` name the store its engine opens (``MetricEngine.open`` projects the same way)."""
    return Settings().for_project(TENANT_ID, PROJECT_ID)
