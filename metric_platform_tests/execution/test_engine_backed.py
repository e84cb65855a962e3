"""End to end through a real engine store: AC-3 (a dry run writes nothing) and AC-4 (executing a
context twice leaves the state executing it once leaves), on SQLite and PostgreSQL manifests."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from metric_platform.db import create_db_engine
from metric_platform.execution import ExecutionContext, ExecutionResult, MetricExecutionEngine, build_context
from metric_platform.sample_data import generate, write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import SAMPLE_SPEC, fixed_today, write_ac_variant
from metric_platform_tests.execution.conftest import EXECUTION_TIME, FakeRecorder
from metric_platform_tests.execution.serve_work import ServeFamilyWork, served_frame

# The columns a read changes by design (LRU and promotion inputs), left out of "unchanged".
ACCESS_COLUMNS = {"engine_entries": ("last_access_at", "access_count"), "engine_requests": ("hits",)}
# A window-spanning rollup along the store -> region map: native slices, a dimension map and the
# pinned target are all memoized, so every kind of publish is exercised.
PARAMS = {"family": "revenue", "anchor": ["region", "day"]}


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("execution-sample")
    write_parquet(generate(SAMPLE_SPEC), directory)
    return directory


@pytest.fixture
def ac(sample_dir: Path, tmp_path: Path) -> AnalyticalContext:
    """The retail AC under a name of its own: PostgreSQL manifests are shared by the session."""
    name = f"retail_{uuid.uuid4().hex[:8]}"
    path = write_ac_variant(tmp_path / "acs", {"name: retail\n": f"name: {name}\n"})
    return load_ac(path, source_path=sample_dir)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def manifest_url(request: pytest.FixtureRequest) -> str | None:
    """None: the embedded default, a SQLite file under the home."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def settings_for(home: Path, manifest_url: str | None) -> Settings:
    return Settings(home=home, engine_manifest_url=manifest_url, engine_data_dir=None)


def context_for(ac: AnalyticalContext, *, dry_run: bool, run_id: str = "run-1") -> ExecutionContext:
    return build_context(
        tenant_id="acme",
        execution_time=EXECUTION_TIME,
        dry_run=dry_run,
        mode="MANUAL",
        triggered_by="tester",
        trigger="BATCH",
        work="engine.serve_family",
        scope={"ac": ac.name, "days": {"start": "2026-11-01", "end": "2026-11-07"}},
        identity={"run_id": run_id, "step_id": "serve[2026-11-01..2026-11-07]"},
        params=PARAMS,
    )


def execute(
    ac: AnalyticalContext, settings: Settings, context: ExecutionContext, recorder: FakeRecorder
) -> ExecutionResult:
    work = ServeFamilyWork(ac, settings, fixed_today)
    return MetricExecutionEngine([work], recorder=recorder).execute(context)


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: relative path -> (size, mtime in ns)."""
    if not root.exists():
        return {}
    return {
        path.relative_to(root).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def manifest_rows(settings: Settings, *, without_access: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every engine table of the manifest (all ACs), sorted; {} before it exists."""
    engine = create_db_engine(settings.manifest_url)
    try:
        with engine.connect() as conn:
            tables = sa.MetaData()
            tables.reflect(conn, only=lambda name, _meta: name.startswith("engine_"))
            out: dict[str, list[tuple[Any, ...]]] = {}
            for name, table in sorted(tables.tables.items()):
                skip = ACCESS_COLUMNS.get(name, ()) if without_access else ()
                columns = [c for c in table.columns if c.name not in skip]
                out[name] = sorted((tuple(r) for r in conn.execute(sa.select(*columns))), key=repr)
            return out
    finally:
        engine.dispose()


def _dry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "metric_platform.execution"]


def test_a_dry_run_on_a_fresh_home_serves_the_real_result_and_creates_nothing(
    *,
    ac: AnalyticalContext,
    home: Path,
    tmp_path: Path,
    manifest_url: str | None,
    no_backstop: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The reference run on a home of its own (its own SQLite manifest: one AC's entries in a
    # manifest shared by two data dirs would name files the other home does not have).
    reference = settings_for(tmp_path / "real-home", None)
    real = execute(ac, reference, context_for(ac, dry_run=False), FakeRecorder())
    settings = settings_for(home, manifest_url)
    rows_before = manifest_rows(settings) if manifest_url else {}
    recorder = FakeRecorder()
    with caplog.at_level(logging.INFO, logger="metric_platform.execution"):
        result = execute(ac, settings, context_for(ac, dry_run=True), recorder)
    assert result.ok and no_backstop == []
    assert not home.exists()
    if manifest_url:
        assert manifest_rows(settings) == rows_before
    assert_frame_equal(served_frame(result.outcome), served_frame(real.outcome))
    assert result.suppressed is not None
    assert result.suppressed["ledger.append"] == 2 and recorder.stored == {}
    assert {"engine.publish", "engine.record_access"} <= set(result.suppressed)
    start, end = _dry_lines(caplog)
    assert start.startswith("DRY RUN execution started:") and "dry_run=true" in start
    assert end.startswith("DRY RUN execution completed:") and "suppressed writes: engine.publish x" in end


def test_a_dry_run_after_a_real_run_changes_no_file_and_no_manifest_row(
    *,
    ac: AnalyticalContext,
    home: Path,
    manifest_url: str | None,
    no_backstop: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(home, manifest_url)
    real = execute(ac, settings, context_for(ac, dry_run=False), FakeRecorder())
    assert real.ok and real.suppressed is None
    rows_before = manifest_rows(settings)
    files_before = files_under(home)
    assert any(name.endswith(".parquet") for name in files_before)
    with caplog.at_level(logging.INFO, logger="metric_platform.execution"):
        result = execute(ac, settings, context_for(ac, dry_run=True, run_id="run-2"), FakeRecorder())
    assert result.ok and no_backstop == []
    assert files_under(home) == files_before  # path, size and mtime of every file
    assert manifest_rows(settings) == rows_before  # access stamps included: a dry run reads only
    assert_frame_equal(served_frame(result.outcome), served_frame(real.outcome))
    assert result.suppressed is not None and "engine.record_access" in result.suppressed
    assert all(line.startswith("DRY RUN ") for line in _dry_lines(caplog))


def test_executing_one_context_twice_leaves_the_state_of_one_execution(
    ac: AnalyticalContext, home: Path, manifest_url: str | None
) -> None:
    """AC-4: the store upserts by key and the ledger deduplicates by idempotency key."""
    settings = settings_for(home, manifest_url)
    recorder = FakeRecorder()
    context = context_for(ac, dry_run=False)
    first = execute(ac, settings, context, recorder)
    state = (
        manifest_rows(settings, without_access=True),
        files_under(settings.data_dir),
        dict(recorder.stored),
    )
    second = execute(ac, settings, context, recorder)
    assert (
        manifest_rows(settings, without_access=True),
        files_under(settings.data_dir),
        recorder.stored,
    ) == state
    assert len(recorder.calls) == 4 and len(recorder.stored) == 2  # the second execution's were duplicates
    assert first.outcome is not None and second.outcome is not None
    assert first.outcome.summary == second.outcome.summary
    assert_frame_equal(served_frame(first.outcome), served_frame(second.outcome))
    assert isinstance(served_frame(first.outcome), pl.DataFrame) and served_frame(first.outcome).height > 0
