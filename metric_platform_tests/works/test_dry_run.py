"""A dry run of a full execute (seed 000 §6, AC-3): zero rows and zero files written anywhere, and
the same computed result as a real run.

"Anywhere" is every file under the home (path, size, mtime in ns) and every row of every table of
the engine manifest and of the platform database (ledger, outbox, snapshots), on SQLite and on
PostgreSQL. The dry runs here would write if they were real: they serve days not memoized yet,
and refresh slices that crossed the stability cutoff.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.engine.compose import Frame
from metric_platform.engine.lifecycle.types import RefreshReport
from metric_platform.engine.serving.types import Served
from metric_platform.execution.results import ExecutionResult
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform_tests.works.conftest import (
    LAST_WEEK,
    LATER,
    PROVISIONAL_SERVE,
    QUERY,
    SERVE,
    WEEK,
    Stores,
)
from metric_platform_tests.works.state import State, files_under, ledger_events, state

pytestmark = pytest.mark.usefixtures("no_backstop")

TWO_WEEKS = (WEEK[0], WEEK[1] + dt.timedelta(days=7))


def computed(result: ExecutionResult) -> Any:
    """What the run computed, comparable across a dry and a real run."""
    assert result.ok and result.outcome is not None
    value = result.outcome.value
    if isinstance(value, Served):
        return value.frame.collect()
    if isinstance(value, Frame):
        return value.data
    assert isinstance(value, RefreshReport)
    return dataclasses.replace(value, dry_run=False)


def assert_same_result(dry: Any, real: Any) -> None:
    if isinstance(real, pl.DataFrame):
        assert_frame_equal(dry, real, check_row_order=False)
    else:
        assert dry == real


def assert_nothing_persisted(stores: Stores, before: State) -> None:
    assert state(stores.settings) == before


@dataclass(frozen=True)
class DryRun:
    """A run that would write in a real run after ``_seed``."""

    work: str
    params: Mapping[str, Any]
    days: tuple[dt.date, dt.date] | None = None
    today: dt.date | None = None

    def run(self, stores: Stores, ac: AnalyticalContext, *, dry_run: bool) -> ExecutionResult:
        return stores.run(ac, self.work, self.params, days=self.days, today=self.today, dry_run=dry_run)


DRY_RUNS = [
    pytest.param(DryRun("engine.serve", SERVE, TWO_WEEKS), id="serve"),
    pytest.param(DryRun("engine.query", QUERY, TWO_WEEKS), id="query"),
    pytest.param(DryRun("engine.refresh", {}, today=LATER), id="refresh"),
]


def _seed(stores: Stores, ac: AnalyticalContext) -> None:
    """A real run of each kind: memoized days of the first week, and provisional days that are
    stale on LATER."""
    assert stores.run(ac, "engine.serve", SERVE, days=WEEK).ok
    assert stores.run(ac, "engine.query", QUERY, days=WEEK).ok
    assert stores.run(ac, "engine.serve", PROVISIONAL_SERVE, days=LAST_WEEK).ok


@pytest.mark.parametrize("case", DRY_RUNS)
def test_a_dry_run_on_a_fresh_home_creates_nothing_and_computes_the_real_result(
    case: DryRun, stores: Stores, ac: AnalyticalContext
) -> None:
    dry = case.run(stores, ac, dry_run=True)

    assert not stores.home.exists(), "not even the home directory"
    assert state(stores.settings) == State({url: {} for url in stores.urls}, {}), "no table anywhere"
    assert dry.suppressed is not None and dry.suppressed["ledger.append"] == 4, "Run*/Step* x2 each"
    if case.work != "engine.refresh":
        assert dry.suppressed["engine.publish"] > 0, "a real run would have memoized what it served"
    real = case.run(stores, ac, dry_run=False)
    assert real.suppressed is None
    assert_same_result(computed(dry), computed(real))
    assert len(ledger_events(stores.settings, real.context.identity.run_id)) == 4


@pytest.mark.parametrize("case", DRY_RUNS)
def test_a_dry_run_after_real_runs_changes_no_file_and_no_row(
    case: DryRun, stores: Stores, ac: AnalyticalContext
) -> None:
    _seed(stores, ac)
    before = state(stores.settings)
    assert any(path.endswith(".parquet") for path in before.files)
    assert all(before.rows[url] for url in stores.urls)

    dry = case.run(stores, ac, dry_run=True)

    assert_nothing_persisted(stores, before)  # access stamps and counts included: a dry run reads only
    assert ledger_events(stores.settings, dry.context.identity.run_id) == []
    assert dry.suppressed is not None
    would_write = "engine.delete" if case.work == "engine.refresh" else "engine.publish"
    assert dry.suppressed.get(would_write, 0) > 0, dry.suppressed
    real = case.run(stores, ac, dry_run=False)
    assert_same_result(computed(dry), computed(real))
    assert state(stores.settings) != before, "the real run did write: the dry run was not a no-op"


def test_the_dry_refresh_reports_exactly_what_the_real_one_recomputes(
    stores: Stores, ac: AnalyticalContext
) -> None:
    _seed(stores, ac)
    files = files_under(stores.settings.data_dir)

    dry = stores.run(ac, "engine.refresh", {}, today=LATER, dry_run=True)
    real = stores.run(ac, "engine.refresh", {}, today=LATER)

    assert dry.outcome is not None and real.outcome is not None
    report = dry.outcome.value
    assert isinstance(report, RefreshReport) and report.dry_run
    assert [(g.family, g.anchor, g.days) for g in report.groups] == [
        ("conversions", ("store", "day"), (dt.date(2026, 11, 19), dt.date(2026, 11, 20)))
    ]
    assert dry.outcome.summary == real.outcome.summary, "slices, recomputed, backend calls"
    assert files_under(stores.settings.data_dir) != files, "the real refresh republished the slices"
