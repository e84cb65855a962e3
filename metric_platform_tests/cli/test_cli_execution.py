"""The CLI's writing commands run through the one execution door: ``--dry-run`` prints what a real
run prints and writes nothing anywhere (seed 000 §6), and every run leaves a ledger run that the
projector folds into a snapshot (seed 004 §1.4)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from metric_platform.db import create_db_engine
from metric_platform.ledger.projection import RunSnapshot, RunStatus, StepStatus
from metric_platform.ledger.projector import Projector, load_snapshot
from metric_platform.settings import Settings
from metric_platform_tests.cli.conftest import run
from metric_platform_tests.engine.conftest import RETAIL_YAML
from metric_platform_tests.works.state import State, state

FROM, TO = "2026-11-01", "2026-11-03"
ON = ("--today", "2026-11-21")
DRY_LINE = "dry run: nothing was written (suppressed writes: "
Argv = Callable[..., tuple[str | Path, ...]]


@pytest.fixture(autouse=True)
def _own_platform_db(monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform database under the tmp home too, whatever the environment says."""
    monkeypatch.delenv("METRIC_PLATFORM_PLATFORM_DB_URL", raising=False)


def serve_argv(sample_dir: Path, *extra: str) -> tuple[str | Path, ...]:
    base = ("serve", RETAIL_YAML, "revenue", "--anchor", "region,day", "--source", sample_dir)
    return (*base, "--from", FROM, "--to", TO, *ON, *extra)


def query_argv(sample_dir: Path, *extra: str) -> tuple[str | Path, ...]:
    base = ("query", RETAIL_YAML, "--metrics", "revenue,spend", "--grain", "region", "--source", sample_dir)
    return (*base, "--derive", "roas=revenue/spend", "--from", FROM, "--to", TO, *ON, *extra)


def table(out: str) -> tuple[list[str], list[str], list[str]]:
    """A printed Polars table as (lines above the rows, the row lines sorted, lines below): a
    query's rows come in no particular order without ``--order``; its rows and layout are the answer."""
    lines = out.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("╞"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("└"))
    return lines[: top + 1], sorted(lines[top + 1 : bottom]), lines[bottom:]


def suppressed(err: str) -> dict[str, int]:
    """The kinds and counts of the dry-run line on stderr (which must be the only line)."""
    assert err.startswith(DRY_LINE) and err.endswith(")\n") and err.count("\n") == 1, err
    items = err[len(DRY_LINE) : -2].split(", ")
    return {kind: int(n) for kind, _, n in (item.rpartition(" x") for item in items)}


def snapshot_all(home: Path) -> State:
    settings = Settings()
    assert settings.home == home
    return state(settings)


@pytest.mark.parametrize("argv", [serve_argv, query_argv], ids=["serve", "query"])
def test_dry_run_prints_the_real_table_and_writes_nothing(
    argv: Argv, sample_dir: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, dry_out, err = run(capsys, *argv(sample_dir, "--dry-run"))
    assert code == 0
    first = suppressed(err)
    assert first["ledger.append"] == 4 and first["engine.publish"] > 0
    assert not home.exists(), "a dry run on a fresh home creates nothing, not even the home"

    code, real_out, err = run(capsys, *argv(sample_dir))
    assert (code, err) == (0, "")
    assert table(dry_out) == table(real_out)
    if argv is serve_argv:  # printed in anchor order: the very same text
        assert dry_out == real_out

    before = snapshot_all(home)
    code, again, err = run(capsys, *argv(sample_dir, "--dry-run"))
    assert code == 0 and table(again) == table(real_out)
    assert "engine.publish" not in suppressed(err), "served from memory now: nothing left to memoize"
    assert snapshot_all(home) == before


def test_refresh_dry_run_says_what_it_did_not_write(
    sample_dir: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(capsys, *serve_argv(sample_dir, "--from", "2026-11-14", "--to", "2026-11-20"))
    assert code == 0
    before = snapshot_all(home)
    later = ("--today", "2026-11-23")

    code, out, err = run(capsys, "refresh", RETAIL_YAML, "--source", sample_dir, "--dry-run", *later)

    assert code == 0
    # The two provisional days at the served grain and at the native grain it rolled up from.
    assert "would recompute 4 slices (stale) in 2 grains (dry run):" in out
    kinds = suppressed(err)
    assert kinds["ledger.append"] == 4 and kinds["engine.publish"] > 0
    assert snapshot_all(home) == before
    code, out, err = run(capsys, "refresh", RETAIL_YAML, "--source", sample_dir, *later)
    assert (code, err) == (0, "") and "recomputed 4 slices (stale) in 2 grains:" in out
    assert snapshot_all(home) != before


def test_serve_prints_its_rows_in_anchor_order(sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The engine's row order is arbitrary (a hashed, parallel group-by, different in every
    process): sorted by the anchor, the same command prints the same text every time."""
    code, out, _ = run(capsys, *serve_argv(sample_dir, "--dry-run", "--format", "csv"))
    assert code == 0
    rows = [tuple(line.split(",")[:2]) for line in out.splitlines()[1:]]
    assert len(rows) == 15, "5 regions x 3 days"
    assert rows == sorted(rows), "rows sorted by (region, day): the same text every time"


def test_the_projector_folds_cli_runs_into_completed_and_failed_snapshots(
    sample_dir: Path, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *serve_argv(sample_dir))
    assert (code, err) == (0, "")
    empty = tmp_path / "no-source"
    empty.mkdir()
    code, out, err = run(capsys, *serve_argv(empty))
    assert (code, out) == (2, "")
    last = err.splitlines()[-1]
    assert last.startswith("error: schema 'transactions': no Parquet source for table 'transactions'")

    engine = create_db_engine(Settings().platform_url)
    try:
        report = Projector(engine).poll()
        snapshots = [load_snapshot(engine, run_id) for run_id in report.runs_updated]
    finally:
        engine.dispose()

    assert report.applied == 8 and report.halted_runs == ()
    by_status: dict[RunStatus, RunSnapshot] = {}
    for snapshot in snapshots:
        assert snapshot is not None
        by_status[snapshot.status] = snapshot
    assert set(by_status) == {RunStatus.COMPLETED, RunStatus.FAILED}
    step_id = f"engine.serve[{FROM}..{TO}]"

    done = by_status[RunStatus.COMPLETED]
    assert done.last_event_seq == 4 and done.failed_steps == 0 and done.root_cause is None
    (step,) = done.steps
    assert (step.step_id, step.status, step.logical_attempt_id) == (step_id, StepStatus.SUCCESS, 1)
    assert len(step.artifacts) == 3, "one slice per day served"
    assert all(a.uri.startswith("engine://retail/METRIC/revenue/region,day/") for a in step.artifacts)
    assert done.artifacts == step.artifacts

    failed = by_status[RunStatus.FAILED]
    assert failed.last_event_seq == 4 and failed.failed_steps == 1 and failed.artifacts == ()
    (step,) = failed.steps
    assert (step.step_id, step.status) == (step_id, StepStatus.FAILED)
    assert step.error is not None and step.error.code == "SourceError" and not step.error.retryable
    assert failed.root_cause is not None and failed.root_cause.error.code == "SourceError"
    assert "no Parquet source" in failed.root_cause.error.message
