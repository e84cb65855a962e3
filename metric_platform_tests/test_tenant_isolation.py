"""Two tenants, two projects, two engine homes: the sample ACs (acme's retail, globex's outlets)
served through ``MetricEngine.open`` on one installation keep apart, unless the installation names
one shared engine store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DateWindow
from metric_platform.db import create_db_engine
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.store.schema import engine_entries
from metric_platform.errors import InvalidRequestError
from metric_platform.execution.context import InvalidContextError
from metric_platform.sample_data import (
    COMMITTED_SAMPLES,
    GLOBEX_COMMITTED_SPEC,
    TABLES,
    SampleSpec,
    generate,
    read_metadata,
    sample_metadata,
)
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform.works.runner import batch_context
from metric_platform.works.workspace import EngineWorkspace
from metric_platform_tests.pg_schema import fresh_pg_schema

ACS_DIR = Path(__file__).resolve().parents[1] / "data" / "acs"
TODAY = date(2026, 11, 21)  # the committed samples end on 2026-11-20
WINDOW = DateWindow(date(2026, 11, 1), date(2026, 11, 7))
# One family of each AC, at its base grain (what its Dagster asset serves, pinned).
SERVES = {"retail": ("revenue", ("region", "day")), "outlets": ("ad_spend", ("channel", "day"))}


@pytest.fixture(scope="module")
def acs() -> dict[str, AnalyticalContext]:
    loaded = [load_ac(ACS_DIR / "retail.yaml"), load_ac(ACS_DIR / "outlets.yaml")]
    return {ac.name: ac for ac in loaded}


def _settings(home: Path, manifest_url: str | None = None, data_dir: Path | None = None) -> Settings:
    # Explicit values, so a METRIC_PLATFORM_ENGINE_* variable in the environment cannot redirect a test.
    return Settings(home=home, engine_manifest_url=manifest_url, engine_data_dir=data_dir)


def _serve_each(acs: dict[str, AnalyticalContext], settings: Settings) -> None:
    for name, (family, anchor) in SERVES.items():
        ac = acs[name]
        engine = MetricEngine.open(ac, settings, today=lambda: TODAY)
        backend = backend_for(ac)
        try:
            served = engine.serve_metric(family, anchor, backend=backend, window=WINDOW, pin=True)
            assert served.frame.collect().height > 0
        finally:
            backend.close()
            engine.close()


def _ac_names(url: str) -> set[str]:
    engine = create_db_engine(url, read_only=True)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.select(engine_entries.c.ac_name).distinct()).scalars())
    finally:
        engine.dispose()


def _project_home(home: Path, ac: AnalyticalContext) -> Path:
    return home / "engine" / ac.tenant_id / str(ac.project_id)


def test_the_sample_acs_belong_to_two_tenants_and_projects(acs: dict[str, AnalyticalContext]) -> None:
    retail, outlets = acs["retail"], acs["outlets"]
    assert (retail.tenant_id, outlets.tenant_id) == ("acme", "globex")
    assert retail.project_id != outlets.project_id
    assert retail.source.path != outlets.source.path


def test_each_project_gets_its_own_manifest_and_data(
    tmp_path: Path, acs: dict[str, AnalyticalContext]
) -> None:
    home = tmp_path / "home"
    _serve_each(acs, _settings(home))
    assert not (home / "engine" / "manifest.sqlite").exists(), "no installation-wide manifest by default"
    for name, ac in acs.items():
        project = _project_home(home, ac)
        manifest = project / "manifest.sqlite"
        assert manifest.is_file()
        assert _ac_names(f"sqlite:///{manifest}") == {name}, "a project's manifest holds only its AC"
        files = list((project / "data").rglob("*.parquet"))
        assert files, f"{name}'s entries live under its project home"
        assert {f.relative_to(project / "data").parts[0] for f in files} == {name}
    # The projects' directories sit side by side under the tenants' directories, nothing else.
    assert sorted(p.name for p in (home / "engine").iterdir()) == ["acme", "globex"]


def test_an_engine_sees_only_its_own_project(tmp_path: Path, acs: dict[str, AnalyticalContext]) -> None:
    settings = _settings(tmp_path / "home")
    _serve_each(acs, settings)
    for name, ac in acs.items():
        engine = MetricEngine.open(ac, settings, today=lambda: TODAY)
        try:
            entries = engine.entries()
            assert entries
            assert {e.key.ac_name for e in entries} == {name}
            # The other AC's name finds nothing in this project's store, even asked for directly.
            other = next(n for n in acs if n != name)
            assert engine.store.list_entries(other) == []
        finally:
            engine.close()


def test_a_context_for_one_ac_is_refused_in_the_others_workspace(
    tmp_path: Path, acs: dict[str, AnalyticalContext]
) -> None:
    settings = _settings(tmp_path / "home")
    retail = EngineWorkspace(acs["retail"], settings)
    outlets = EngineWorkspace(acs["outlets"], settings)
    params = {"family": "ad_spend", "anchor": ["channel"]}
    outlets_context = batch_context(outlets, "engine.serve", params)
    outlets.check_scope(outlets_context)  # its own workspace accepts it
    with pytest.raises(InvalidContextError, match="serves AC 'retail'"):
        retail.check_scope(outlets_context)
    # The right AC name with the other tenant is refused too: a tenant cannot borrow an AC.
    borrowed = outlets_context.model_copy(
        update={"scope": outlets_context.scope.model_copy(update={"ac": "retail"})}
    )
    with pytest.raises(InvalidContextError, match="tenant 'globex' does not own AC 'retail'"):
        retail.check_scope(borrowed)


def test_an_explicit_manifest_url_keeps_one_shared_store(
    tmp_path: Path, acs: dict[str, AnalyticalContext]
) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{tmp_path / 'shared' / 'manifest.sqlite'}"
    (tmp_path / "shared").mkdir()
    _serve_each(acs, _settings(home, manifest_url=url))
    assert _ac_names(url) == set(acs), "both ACs share the one manifest, namespaced by name"
    # The Parquet root stays shared with it (a manifest and its root are one store).
    data = home / "engine" / "data"
    assert {p.name for p in data.iterdir()} == set(acs)
    assert not (home / "engine" / "acme").exists()
    assert not (home / "engine" / "globex").exists()


@pytest.mark.postgres
def test_a_shared_postgresql_manifest_holds_both_acs(
    tmp_path: Path, acs: dict[str, AnalyticalContext], pg_url: str
) -> None:
    with fresh_pg_schema(pg_url) as url:
        settings = _settings(tmp_path / "home", manifest_url=url)
        _serve_each(acs, settings)
        assert _ac_names(url) == set(acs)
        engine = MetricEngine.open(acs["outlets"], settings, today=lambda: TODAY)
        try:
            assert {e.key.ac_name for e in engine.entries()} == {"outlets"}
        finally:
            engine.close()


def test_the_globex_sample_is_what_the_generator_makes() -> None:
    # Fails when the generator changes without regenerating data/sample_globex/ (COMMITTED_SAMPLES).
    directory = ACS_DIR.parent / "sample_globex"
    assert COMMITTED_SAMPLES["sample_globex"] == GLOBEX_COMMITTED_SPEC
    expected = generate(GLOBEX_COMMITTED_SPEC)
    for table in TABLES:
        assert pl.read_parquet(directory / f"{table}.parquet").equals(expected[table], null_equal=True), table
    assert read_metadata(directory) == json.loads(json.dumps(sample_metadata(GLOBEX_COMMITTED_SPEC)))
    assert sum(p.stat().st_size for p in directory.iterdir()) < 1_000_000


def test_a_sample_carries_its_tenant_and_project() -> None:
    spec = SampleSpec(rows=200, days=5, end_date=date(2026, 1, 5), tenant_id="initech", project_id="p-9")
    frames = generate(spec)
    assert frames["transactions"]["tenant_id"].unique().to_list() == ["initech"]
    assert frames["transactions"]["project_id"].unique().to_list() == ["p-9"]
    assert frames["stores"]["store_name"].str.starts_with("Initech ").all()
    assert (sample_metadata(spec)["tenant_id"], sample_metadata(spec)["project_id"]) == ("initech", "p-9")
    with pytest.raises(InvalidRequestError, match="tenant_id is empty"):
        SampleSpec(tenant_id=" ")


def test_the_outlets_filter_keeps_only_globex_rows(tmp_path: Path, acs: dict[str, AnalyticalContext]) -> None:
    # Mixed sources (acme's rows appended to globex's): the AC's tenant filter still counts only its own.
    mixed = tmp_path / "mixed"
    globex = generate(GLOBEX_COMMITTED_SPEC)
    acme = generate(SampleSpec(rows=500, days=60, end_date=date(2026, 11, 20)))
    mixed.mkdir()
    for table in TABLES:
        frame = globex[table] if table != "transactions" else pl.concat([globex[table], acme[table]])
        frame.write_parquet(mixed / f"{table}.parquet")
    ac = load_ac(ACS_DIR / "outlets.yaml", source_path=mixed)
    engine = MetricEngine.open(ac, _settings(tmp_path / "home"), today=lambda: TODAY)
    backend = backend_for(ac)
    try:
        served = engine.serve_metric("orders", ("outlet", "day"), backend=backend, window=WINDOW)
        total = served.frame.select(pl.col("orders").sum()).collect().item()
    finally:
        backend.close()
        engine.close()
    days = pl.col("event_date").is_between(WINDOW.start, WINDOW.end)
    assert total == globex["transactions"].filter(days).height
    assert total < globex["transactions"].filter(days).height + acme["transactions"].filter(days).height


# --- Settings.for_project -------------------------------------------------------------------------


def test_for_project_names_the_project_home(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    project = settings.for_project("acme", "p-1")
    assert (
        project.manifest_url
        == f"sqlite:///{(tmp_path / 'engine' / 'acme' / 'p-1' / 'manifest.sqlite').resolve()}"
    )
    assert project.data_dir == tmp_path / "engine" / "acme" / "p-1" / "data"
    assert project.platform_url == settings.platform_url, "the platform database stays one per installation"
    assert settings.data_dir == tmp_path / "engine" / "data", "the original settings are untouched"
    again = project.for_project("globex", "p-2")
    assert again.data_dir == tmp_path / "engine" / "globex" / "p-2" / "data", "projecting again replaces"


@pytest.mark.parametrize(
    ("manifest_url", "data_dir"),
    [("sqlite:////srv/shared/manifest.sqlite", None), (None, Path("/srv/shared/data"))],
    ids=["manifest", "data_dir"],
)
def test_an_explicit_store_is_shared_by_every_project(
    tmp_path: Path, manifest_url: str | None, data_dir: Path | None
) -> None:
    settings = _settings(tmp_path, manifest_url=manifest_url, data_dir=data_dir)
    project = settings.for_project("acme", "p-1")
    assert (project.manifest_url, project.data_dir) == (settings.manifest_url, settings.data_dir)


@pytest.mark.parametrize("tenant", ["", ".", "..", "../evil", "a/b", "a b", "acme\n", "ümlaut"])
def test_a_tenant_id_that_is_no_safe_directory_name_is_refused(tmp_path: Path, tenant: str) -> None:
    with pytest.raises(InvalidRequestError, match="letters, digits"):
        _settings(tmp_path).for_project(tenant, "p-1")


def test_a_project_id_is_checked_too(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="project_id"):
        _settings(tmp_path).for_project("acme", "../p")


@pytest.fixture(autouse=True)
def _no_engine_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # An installation's environment must not redirect these tests' stores.
    for name in ("ENGINE_MANIFEST_URL", "ENGINE_DATA_DIR", "HOME", "INSTALLATION_FILE"):
        monkeypatch.delenv(f"METRIC_PLATFORM_{name}", raising=False)
    yield


def test_open_uses_the_acs_project(tmp_path: Path, acs: dict[str, AnalyticalContext]) -> None:
    engine = MetricEngine.open(acs["outlets"], _settings(tmp_path))
    try:
        assert engine.store.data_dir == (_project_home(tmp_path, acs["outlets"]) / "data").resolve()
    finally:
        engine.close()
    assert (_project_home(tmp_path, acs["outlets"]) / "manifest.sqlite").is_file()
    assert not (_project_home(tmp_path, acs["retail"])).exists(), "opening one AC creates no other home"
