"""The main job end to end: every sample AC's Dagster assets materialized headless on a
repository-local instance, recorded in the ledger; a second run serves the stable days from the
engine's memory."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

import dagster as dg
import pytest

from metric_platform import cli
from metric_platform.acs import load_acs
from metric_platform.defs.instance import open_instance
from metric_platform.errors import InternalError
from metric_platform.ledger.store import RunEventStore
from metric_platform.main_job import MainJobReport, run_main_job
from metric_platform.sample_data import SampleSpec
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import REPO_ROOT

ACS_DIR = REPO_ROOT / "data" / "acs"
SPEC = SampleSpec(rows=2000, days=20)
FAMILY_LINE = re.compile(r"^    (\w+)/(\w+): (\d+) rows — (.*)$")


def committed_hashes() -> dict[str, str]:
    return {
        f"{path.parent.name}/{path.name}": hashlib.sha256(path.read_bytes()).hexdigest()
        for directory in ("sample", "sample_globex")
        for path in sorted((REPO_ROOT / "data" / directory).iterdir())
        if path.is_file()
    }


def run(home: Path, acs_dir: Path = ACS_DIR) -> tuple[MainJobReport, list[str]]:
    lines: list[str] = []
    report = run_main_job(
        acs_dir=acs_dir,
        settings=Settings(home=home, engine_manifest_url=None, engine_data_dir=None, platform_db_url=None),
        sample=SPEC,
        dagster_yaml=REPO_ROOT / "dagster.yaml",
        out=lines.append,
    )
    return report, "\n".join(lines).splitlines()


def family_lines(lines: list[str], ac: str, section: str = "families") -> dict[str, str]:
    """family -> how it was served, from the lines printed under the AC's ``section`` run."""
    found: dict[str, str] = {}
    inside = False
    for line in lines:
        if line.startswith("  ") and not line.startswith("    "):
            inside = line.startswith(f"  {section}: ")
        match = FAMILY_LINE.match(line)
        if inside and match and match[1] == ac:
            found[match[2]] = match[4]
    return found


@pytest.fixture(autouse=True)
def _no_dagster_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


def test_the_main_job_materializes_every_sample_ac_then_serves_stable_days_from_memory(
    tmp_path: Path,
) -> None:
    before = committed_hashes()
    home = tmp_path / "home"

    report, lines = run(home)

    assert report.acs == ("outlets", "retail")
    assert all(r.success for r in report.runs), report.runs
    labels = {(r.ac, r.label) for r in report.runs}
    assert {("retail", "profiles and checks"), ("retail", "families"), ("outlets", "families")} <= labels
    settings = Settings(home=home)
    acs = {ac.name: ac for ac in load_acs(ACS_DIR, settings)}
    for ac in acs.values():
        families = next(r for r in report.runs if r.ac == ac.name and r.label == "families")
        assert families.materializations == len(ac.families) * SPEC.days, "one per family and day"
        # Each family's days came from one backend call over the whole range.
        for family, served in family_lines(lines, ac.name).items():
            assert served.startswith("backend at"), (family, served)
            assert served.count("..") == 1, f"one backend range for {family}: {served}"
    checks = sum(r.checks for r in report.runs)
    assert checks > 0, "the profile assets evaluated their checks"
    # Cache-hint grains with time roll up from the families' days (the unpartitioned ones cover the
    # AC's whole range, whose days before the sample no family partition holds).
    grains = [line for line in lines if re.match(r"^    \w+/\w+/\w+/(week|month|quarter): ", line)]
    assert grains and all("rollup" in line for line in grains), grains
    assert lines[-1].startswith(f"open the UI on these results: DAGSTER_HOME={report.dagster_home} ")
    assert (report.dagster_home / "dagster.yaml").read_bytes() == (REPO_ROOT / "dagster.yaml").read_bytes()
    for ac in acs.values():  # two tenants, two engine homes
        assert (home / "engine" / ac.tenant_id / str(ac.project_id) / "manifest.sqlite").is_file()

    # The runs are in the instance the UI opens, and in the ledger (RunStarted and RunCompleted each).
    with open_instance(report.dagster_home) as instance:
        stored = instance.get_runs()
        assert {r.run_id for r in stored} == {r.run_id for r in report.runs}
        assert all(r.status is dg.DagsterRunStatus.SUCCESS for r in stored)
    with RunEventStore.open(settings.platform_url) as store:
        for summary in report.runs:
            kinds = [e.event_type.value for e in store.events(summary.run_id)]
            # Run* events come from Dagster's run records (the reconciler's pass), after the steps'.
            assert kinds.count("RunStarted") == 1 and kinds[-1] == "RunCompleted", kinds
            assert "StepCompleted" in kinds

    again, lines2 = run(home)

    assert all(r.success for r in again.runs)
    hold_off = {name: ac.stability.hold_off_days if ac.stability else 0 for name, ac in acs.items()}
    for name in acs:
        for family, served in family_lines(lines2, name).items():
            # Stable days from memory; only the provisional ones (the last hold_off - 1) recomputed.
            match = re.search(r"backend computed (\S+)\.\.(\S+)", served)
            assert match, (family, served)
            days = (dt.date.fromisoformat(match[2]) - dt.date.fromisoformat(match[1])).days + 1
            assert days == hold_off[name] - 1, (name, family, served)
    assert committed_hashes() == before, "the committed samples are never modified"


def test_a_failed_run_fails_the_main_job_with_the_runs_named(tmp_path: Path) -> None:
    acs_dir = tmp_path / "acs"
    acs_dir.mkdir()
    text = (ACS_DIR / "outlets.yaml").read_text()
    # A source file that vanishes after validation: the family run fails, and the job says which.
    (acs_dir / "outlets.yaml").write_text(text.replace("path: ../sample_globex", f"path: {tmp_path / 'src'}"))
    source = tmp_path / "src"
    source.mkdir()
    for path in (REPO_ROOT / "data" / "sample_globex").glob("*.parquet"):
        (source / path.name).write_bytes(b"not parquet")

    with pytest.raises(InternalError, match=r"the main job's runs failed: outlets/"):
        run(tmp_path / "home", acs_dir)


def test_cli_main_takes_the_acs_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METRIC_PLATFORM_HOME", str(tmp_path / "home"))
    empty = tmp_path / "none"
    empty.mkdir()
    assert cli.main(["main", "--acs", str(empty)]) == 2
    assert "no analytical contexts" in capsys.readouterr().err
