"""``metric_platform.acs``: the ACs under one directory, their committed samples and fresh copies."""

from __future__ import annotations

import hashlib
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from metric_platform.acs import ac_files, ensure_fresh_samples, fresh_sample_dir, load_acs
from metric_platform.errors import ConfigError, SourceError
from metric_platform.sample_data import COMMITTED_SAMPLES, METADATA_FILE, SampleSpec, read_metadata
from metric_platform.settings import Settings

DATA = Path(__file__).resolve().parents[1] / "data"
TODAY = date(2026, 12, 10)
SMALL = SampleSpec(rows=400, days=12)  # quick to generate; ends the day before TODAY


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A copy of the repository's data/ (the ACs and their committed samples): tests may change it."""
    copy = tmp_path / "data"
    shutil.copytree(DATA / "acs", copy / "acs")
    for name in COMMITTED_SAMPLES:
        shutil.copytree(DATA / name, copy / name)
    return copy


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", engine_manifest_url=None, engine_data_dir=None)


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_the_repository_acs_are_found_in_name_order() -> None:
    assert [p.name for p in ac_files(DATA / "acs")] == ["outlets.yaml", "retail.yaml"]


def test_a_directory_without_acs_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an AC", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no analytical contexts") as caught:
        ac_files(tmp_path)
    assert caught.value.issues[0].hint is not None
    with pytest.raises(ConfigError, match="is not a directory"):
        ac_files(tmp_path / "missing")


def test_fresh_sample_dir_is_under_the_home(settings: Settings) -> None:
    assert fresh_sample_dir(settings, DATA / "sample_globex") == settings.home / "samples" / "sample_globex"


def test_without_fresh_copies_the_acs_read_their_committed_samples(data: Path, settings: Settings) -> None:
    acs = {ac.name: ac for ac in load_acs(data / "acs", settings)}
    assert {name: ac.source.path for name, ac in acs.items()} == {
        "outlets": (data / "sample_globex").resolve(),
        "retail": (data / "sample").resolve(),
    }
    assert not (settings.home / "samples").exists(), "loading the ACs generates nothing"
    assert not settings.home.exists()


def test_fresh_copies_keep_the_committed_identity_and_end_yesterday(data: Path, settings: Settings) -> None:
    before = {name: _digests(data / name) for name in COMMITTED_SAMPLES}
    copies = ensure_fresh_samples(data / "acs", settings, spec=SMALL, today=TODAY)
    # In AC file order (outlets.yaml, retail.yaml), one per committed sample.
    assert [(c.committed.name, c.fresh, c.written) for c in copies] == [
        ("sample_globex", settings.home / "samples" / "sample_globex", True),
        ("sample", settings.home / "samples" / "sample", True),
    ]
    for copy in copies:
        committed = read_metadata(copy.committed)
        assert committed is not None
        assert copy.meta == read_metadata(copy.fresh)
        for key in ("seed", "tenant_id", "project_id", "stores", "campaigns"):
            assert copy.meta[key] == committed[key], key
        assert (copy.meta["rows"], copy.meta["days"], copy.meta["end_date"]) == (400, 12, "2026-12-09")
        facts = pl.read_parquet(copy.fresh / "transactions.parquet")
        assert facts["tenant_id"].unique().to_list() == [committed["tenant_id"]]
        assert facts["event_date"].max() == date(2026, 12, 9)
    assert {name: _digests(data / name) for name in COMMITTED_SAMPLES} == before, (
        "committed samples untouched"
    )


def test_an_existing_fresh_copy_is_reused(data: Path, settings: Settings) -> None:
    first = ensure_fresh_samples(data / "acs", settings, spec=SMALL, today=TODAY)
    files = {c.fresh: _digests(c.fresh) for c in first}
    again = ensure_fresh_samples(data / "acs", settings, spec=SampleSpec(rows=999), today=date(2027, 1, 1))
    assert [c.written for c in again] == [False, False]
    assert [c.meta for c in again] == [c.meta for c in first]
    assert {c.fresh: _digests(c.fresh) for c in again} == files


def test_the_acs_read_the_fresh_copies_once_they_exist(data: Path, settings: Settings) -> None:
    ensure_fresh_samples(data / "acs", settings, spec=SMALL, today=TODAY)
    acs = {ac.name: ac for ac in load_acs(data / "acs", settings)}
    assert {name: ac.source.path for name, ac in acs.items()} == {
        "outlets": (settings.home / "samples" / "sample_globex").resolve(),
        "retail": (settings.home / "samples" / "sample").resolve(),
    }


def test_an_incomplete_fresh_copy_is_not_read(data: Path, settings: Settings) -> None:
    ensure_fresh_samples(data / "acs", settings, spec=SMALL, today=TODAY)
    (settings.home / "samples" / "sample" / "stores.parquet").unlink()  # an interrupted generation
    acs = {ac.name: ac for ac in load_acs(data / "acs", settings)}
    assert acs["retail"].source.path == (data / "sample").resolve()
    assert acs["outlets"].source.path == (settings.home / "samples" / "sample_globex").resolve()
    # The next ensure redoes it.
    redone = ensure_fresh_samples(data / "acs", settings, spec=SMALL, today=TODAY)
    assert [c.written for c in redone] == [False, True]


def test_an_ac_on_other_parquet_data_is_left_alone(data: Path, settings: Settings) -> None:
    plain = data / "plain"
    shutil.copytree(data / "sample", plain)
    (plain / METADATA_FILE).unlink()  # a Parquet directory that is no generated sample
    text = (data / "acs" / "retail.yaml").read_text(encoding="utf-8")
    (data / "acs" / "retail.yaml").write_text(text.replace("path: ../sample ", "path: ../plain "), "utf-8")
    copies = ensure_fresh_samples(data / "acs", settings, spec=SMALL, today=TODAY)
    assert [c.committed.name for c in copies] == ["sample_globex"]
    acs = {ac.name: ac for ac in load_acs(data / "acs", settings)}
    assert acs["retail"].source.path == plain.resolve()


def test_two_acs_on_one_sample_share_one_copy(data: Path, settings: Settings) -> None:
    text = (data / "acs" / "retail.yaml").read_text(encoding="utf-8")
    (data / "acs" / "retail_copy.yaml").write_text(text.replace("name: retail", "name: retail_copy"), "utf-8")
    copies = ensure_fresh_samples(data / "acs", settings, spec=SMALL, today=TODAY)
    assert [c.committed.name for c in copies] == ["sample_globex", "sample"]
    acs = {ac.name: ac for ac in load_acs(data / "acs", settings)}
    assert acs["retail"].source.path == acs["retail_copy"].source.path


def test_every_problem_of_every_ac_file_is_reported(data: Path, settings: Settings) -> None:
    outlets = (data / "acs" / "outlets.yaml").read_text(encoding="utf-8")
    (data / "acs" / "outlets.yaml").write_text(
        outlets.replace("hold_off_days: 2", "hold_off_days: -1"), "utf-8"
    )
    retail = (data / "acs" / "retail.yaml").read_text(encoding="utf-8")
    (data / "acs" / "zz_retail_again.yaml").write_text(retail, "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_acs(data / "acs", settings)
    files = {Path(issue.file).name for issue in caught.value.issues}
    assert files == {"outlets.yaml", "zz_retail_again.yaml"}
    assert any("already used by" in issue.message for issue in caught.value.issues)


def test_two_committed_samples_with_one_name_are_refused(data: Path, settings: Settings) -> None:
    other = data / "elsewhere" / "sample"
    shutil.copytree(data / "sample_globex", other)
    text = (data / "acs" / "outlets.yaml").read_text(encoding="utf-8")
    (data / "acs" / "outlets.yaml").write_text(
        text.replace("../sample_globex", "../elsewhere/sample"), "utf-8"
    )
    with pytest.raises(ConfigError, match="would share the fresh copy"):
        ensure_fresh_samples(data / "acs", settings, spec=SMALL, today=TODAY)
    assert not (settings.home / "samples").exists(), "nothing generated before the problem was found"


def test_a_committed_sample_without_its_identity_is_a_source_error(data: Path, settings: Settings) -> None:
    meta = data / "sample_globex" / METADATA_FILE
    meta.write_text(meta.read_text(encoding="utf-8").replace('"tenant_id"', '"tenant"'), "utf-8")
    with pytest.raises(SourceError, match="lacks tenant_id"):
        ensure_fresh_samples(data / "acs", settings, spec=SMALL, today=TODAY)
