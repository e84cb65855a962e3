"""The main job end to end: fresh sample, every AC validated, profiled and served, and idempotent."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from metric_platform import cli
from metric_platform.main_job import MainJobReport, run_main_job
from metric_platform.sample_data import SampleSpec
from metric_platform.semantics.loader import load_ac
from metric_platform_tests.engine.conftest import (
    METRIC_FAMILIES,
    QM_KEYS,
    REPO_ROOT,
    fetch_grain,
    make_settings,
    miss_grains,
    write_ac_variant,
)

COMMITTED_SAMPLE = REPO_ROOT / "data" / "sample"
SPEC = SampleSpec(rows=2000, days=20)


def committed_hashes() -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(COMMITTED_SAMPLE.iterdir())
        if path.is_file()
    }


@pytest.fixture
def acs_dir(tmp_path: Path) -> Path:
    """A copy of the retail AC reading the repository's committed sample by absolute path."""
    directory = tmp_path / "acs"
    write_ac_variant(directory, {"path: ../sample": f"path: {COMMITTED_SAMPLE}"})
    return directory


def run(acs_dir: Path, home: Path) -> tuple[MainJobReport, list[str]]:
    lines: list[str] = []
    report = run_main_job(
        acs_dir=acs_dir,
        settings=make_settings(home),
        sample=SPEC,
        committed_sample=COMMITTED_SAMPLE,
        out=lines.append,
    )
    return report, "\n".join(lines).splitlines()


def family_grains(acs_dir: Path) -> list[tuple[str, str]]:
    """(family, "grain, ...") for every grain the job serves: each family's base grain, then its
    cache_hint grains, in AC order."""
    ac = load_ac(acs_dir / "retail.yaml")
    return [
        (family.name, ", ".join(grain))
        for family in ac.families.values()
        for grain in dict.fromkeys((family.base_grain, *family.cache_grains))
    ]


SERVED = re.compile(r"  served (\w+) at \[([\w, ]*)\]: (\d+) rows — (exact|rollup|backend)\b(.*)$")


def served_lines(lines: list[str]) -> list[tuple[str, str, str, str]]:
    """(family, grain, path kind, path detail) from the "served ..." lines, in order."""
    found = []
    for line in lines:
        if line.startswith("  served "):
            match = SERVED.match(line)
            assert match, f"unexpected served line: {line!r}"
            found.append((match[1], match[2], match[4], match[5]))
    return found


def computed_counts(lines: list[str]) -> dict[str, tuple[int, int]]:
    """schema -> (computed, from memory), parsed from the "profiled ..." lines."""
    found = {}
    for line in lines:
        match = re.match(r"\s+profiled (\w+): \d+ rows, \d+ columns \((\d+) computed, (\d+) from", line)
        if match:
            found[match[1]] = (int(match[2]), int(match[3]))
    return found


def test_main_job_profiles_and_serves_the_fresh_sample_then_computes_nothing_new(
    tmp_path: Path, acs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # COMMITTED_SAMPLE in main_job is relative to the working directory.
    monkeypatch.chdir(REPO_ROOT)
    before = committed_hashes()
    home = tmp_path / "home"

    report, lines = run(acs_dir, home)

    assert report.acs == ("retail",)
    counts = (report.schemas_profiled, report.columns_profiled, report.families_served)
    assert counts == (3, QM_KEYS, METRIC_FAMILIES)
    assert lines[0].startswith(f"sample data generated: {home / 'sample'} (2000 transactions, 20 days")
    assert f"source parquet:{(home / 'sample').resolve()}" in "\n".join(lines), "read the fresh sample"
    assert computed_counts(lines) == {"transactions": (12, 0), "stores": (4, 0), "campaigns": (3, 0)}
    assert "  profiled transactions: 2000 rows, 12 columns (12 computed, 0 from the engine's memory)" in lines
    grains = family_grains(acs_dir)
    assert len(grains) > METRIC_FAMILIES, "some families declare cache_hint grains"
    served = served_lines(lines)
    assert [(family, grain) for family, grain, _, _ in served] == grains
    ac = load_ac(acs_dir / "retail.yaml")
    for family, grain, kind, detail in served:
        base = ac.family(family).base_grain
        if grain == ", ".join(base):
            # The first serve of a family: one backend call over the default window at the native
            # grain (region by store, by day), memoized.
            fetched = ", ".join(fetch_grain(ac, family, base))
            assert kind == "backend", detail
            assert detail.startswith(f" at ({fetched}); backend computed "), detail
        else:  # a cache_hint grain right after its family's base grain: a rollup of those slices
            assert kind == "rollup", (family, grain, detail)
    assert lines[-1].startswith("main job done in ") and "1 AC(s), 3 schemas / 19 columns" in lines[-1]
    # Every step went through the execution door and is in the ledger, projected and announced.
    steps = 3 + len(grains) + 1  # profiles, serves, the refresh
    events = 2 * steps + 2  # StepStarted/StepCompleted each, RunStarted, RunCompleted
    (ledger,) = [line for line in lines if line.startswith("ledger: ")]
    assert f"COMPLETED ({steps} steps); the projector applied {events} event(s)" in ledger, ledger
    assert f"the outbox delivered {events} message(s)" in ledger, ledger

    again, lines = run(acs_dir, home)

    assert (again.acs, again.schemas_profiled, again.columns_profiled, again.families_served) == (
        report.acs,
        report.schemas_profiled,
        report.columns_profiled,
        report.families_served,
    )
    assert lines[0].startswith("sample data reused")
    assert computed_counts(lines) == {"transactions": (0, 12), "stores": (0, 4), "campaigns": (0, 3)}
    again_served = served_lines(lines)
    assert [(family, grain) for family, grain, _, _ in again_served] == grains
    assert all(kind in ("exact", "rollup") for _, _, kind, _ in again_served), "nothing recomputed"
    assert not any("backend computed" in detail for _, _, _, detail in again_served)
    # A base grain is an exact hit where a miss memoized it (the fetch grain, or a cache_hint).
    bases = {(f.name, ", ".join(f.base_grain)) for f in ac.families.values()}
    kept = {
        (f.name, ", ".join(f.base_grain))
        for f in ac.families.values()
        if ac.canonical_grain(f.base_grain) in miss_grains(ac, f.name, f.base_grain)
    }
    assert bases - kept == {("transaction_count", "region, day")}, "rolled up from (store, day) again"
    assert {(f, g) for f, g, kind, _ in again_served if kind == "exact"} >= kept
    assert committed_hashes() == before, "the committed sample must never be modified"


def test_main_job_uses_the_fresh_sample_from_any_working_directory(
    tmp_path: Path, acs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _, lines = run(acs_dir, tmp_path / "home")
    assert "  profiled transactions: 2000 rows, 12 columns (12 computed, 0 from the engine's memory)" in lines


def test_cli_main_runs_the_job_under_the_configured_home(
    tmp_path: Path, acs_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("METRIC_PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("METRIC_PLATFORM_ENGINE_MANIFEST_URL", raising=False)
    monkeypatch.delenv("METRIC_PLATFORM_ENGINE_DATA_DIR", raising=False)
    before = committed_hashes()

    assert cli.main(["main", "--acs", str(acs_dir)]) == 0

    out, err = capsys.readouterr()
    assert err == ""
    assert "1 AC(s), 3 schemas / 19 columns profiled, 8 families served" in out
    assert (tmp_path / "home" / "sample" / "sample.json").is_file()
    assert (tmp_path / "home" / "engine" / "manifest.sqlite").is_file()
    assert committed_hashes() == before
