"""``qm.checks`` through the one ``execute``, as an asset check's body runs it: the committed sample
passes every check; a copy where one store sits in two regions fails the blocking fd check with
that store as its example, and the engine refuses the rollup to region on it; a re-execution the
ledger answers from its record gives the same outcomes from the summary alone."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl
import pytest

from metric_platform.engine.qm.checks import CheckOutcome, planned_checks
from metric_platform.engine.serving.dimension_maps import FDViolationError
from metric_platform.errors import UnknownNameError
from metric_platform.execution.context import InvalidContextError
from metric_platform.execution.engine import MetricExecutionEngine
from metric_platform.execution.results import ExecutionResult, ExecutionStatus
from metric_platform.ledger.recorder import LedgerRecorder
from metric_platform.ledger.spool import Spool
from metric_platform.ledger.store import RunEventStore
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.works.quality import NAME, QualityWork, check_outcomes, outcomes_from_summary
from metric_platform.works.runner import batch_context
from metric_platform.works.workspace import EngineWorkspace
from metric_platform_tests.engine.conftest import RETAIL_YAML
from metric_platform_tests.works.conftest import Stores

SAMPLE = RETAIL_YAML.parent.parent / "sample"
MAX_SUMMARY_BYTES = 3072  # the StepCompleted holding it stays under 4 KiB (seed 004 §6)


@pytest.fixture(scope="module")
def sample_ac() -> AnalyticalContext:
    return load_ac(RETAIL_YAML, source_path=SAMPLE)


@pytest.fixture(scope="module")
def split_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[AnalyticalContext, str, list[str]]:
    """The sample with its first store listed again in another region: (AC, store, its regions)."""
    directory = tmp_path_factory.mktemp("split-store")
    for table in SAMPLE.glob("*.parquet"):
        shutil.copy(table, directory / table.name)
    stores = pl.read_parquet(SAMPLE / "stores.parquet")
    first = stores.row(0, named=True)
    other = next(r for r in sorted(stores["region"].unique().to_list()) if r != first["region"])
    moved = stores.head(1).with_columns(region=pl.lit(other))
    pl.concat([stores, moved]).write_parquet(directory / "stores.parquet")
    regions = sorted([first["region"], other])
    return load_ac(RETAIL_YAML, source_path=directory), first["store_id"], regions


@contextmanager
def _executor(workspace: EngineWorkspace) -> Iterator[MetricExecutionEngine]:
    """The execution engine with this work and the platform database's ledger as its recorder."""
    settings = workspace.settings
    store = RunEventStore.open(settings.platform_url)
    try:
        recorder = LedgerRecorder(store, Spool(settings.spool_dir), budget_ms=settings.ledger_write_budget_ms)
        yield MetricExecutionEngine([QualityWork(workspace)], recorder=recorder)
    finally:
        store.close()


def _check(workspace: EngineWorkspace, schema: str, *, run_id: str | None = None) -> ExecutionResult:
    context = batch_context(workspace, NAME, {"schema_name": schema}, run_id=run_id)
    with _executor(workspace) as executor:
        return executor.execute(context)


def _by_name(result: ExecutionResult) -> dict[str, CheckOutcome]:
    assert result.status is ExecutionStatus.COMPLETED and result.outcome is not None
    return {o.name: o for o in check_outcomes(result.outcome)}


@pytest.mark.parametrize("schema", ["transactions", "stores", "campaigns"])
def test_the_sample_passes_every_check(schema: str, stores: Stores, sample_ac: AnalyticalContext) -> None:
    result = _check(stores.workspace(sample_ac), schema)

    outcomes = _by_name(result)
    assert list(outcomes) == [p.name for p in planned_checks(sample_ac, schema)]
    failed = {name: o.description for name, o in outcomes.items() if not o.passed}
    assert failed == {}
    assert result.outcome is not None and result.outcome.value == tuple(outcomes.values())
    summary = dict(result.outcome.summary)
    assert (summary["schema"], summary["passed"], summary["failed"]) == (schema, True, [])
    assert outcomes_from_summary(json.loads(json.dumps(summary))) == tuple(outcomes.values())
    assert len(json.dumps(summary).encode()) < MAX_SUMMARY_BYTES
    profiled = {a.uri.split("/")[5] for a in result.outcome.artifacts if "/column_profile/" in a.uri}
    assert profiled == {f"{schema},{c}" for c in sample_ac.schema(schema).columns}
    maps = [a.uri for a in result.outcome.artifacts if "/fd_map/" in a.uri]
    assert maps == ([] if schema == "transactions" else [maps[0]]), "the verified map, memoized"


def test_a_store_in_two_regions_fails_the_blocking_fd_check_and_the_rollup_is_refused(
    sqlite_stores: Stores, split_store: tuple[AnalyticalContext, str, list[str]]
) -> None:
    ac, store, regions = split_store
    workspace = sqlite_stores.workspace(ac)

    outcomes = _by_name(_check(workspace, "stores"))

    fd = outcomes["fd_store__region"]
    assert not fd.passed and fd.blocking
    assert fd.metadata["violating_values"] == 1
    assert fd.metadata["examples"] == [{"store": store, "region": regions}]
    assert f"{store!r} -> " in fd.description and "fix the data or remove the edge" in fd.description
    assert outcomes["null_fraction"].passed and outcomes["distinct_counts"].passed, "only the edge is wrong"
    with workspace.session() as (engine, backend):
        assert backend is not None
        with pytest.raises(FDViolationError, match=f"{store!r} -> {regions[0]!r}, {regions[1]!r}"):
            engine.serve_metric("revenue", ("region",), backend=backend)


def test_a_re_execution_reads_the_outcomes_from_the_ledgers_summary(
    sqlite_stores: Stores, split_store: tuple[AnalyticalContext, str, list[str]]
) -> None:
    workspace = sqlite_stores.workspace(split_store[0])
    first = _check(workspace, "stores", run_id="run-1")

    again = _check(workspace, "stores", run_id="run-1")

    assert again.replayed_from_seq is not None
    assert again.outcome is not None and again.outcome.value is None, "the ledger keeps no value"
    assert check_outcomes(again.outcome) == tuple(_by_name(first).values())
    assert not _by_name(again)["fd_store__region"].passed


def test_an_unknown_schema_or_parameter_is_rejected_before_anything_runs(
    sqlite_stores: Stores, sample_ac: AnalyticalContext
) -> None:
    workspace = sqlite_stores.workspace(sample_ac)
    with pytest.raises(UnknownNameError, match="did you mean 'stores'"):
        _check(workspace, "store")
    context = batch_context(workspace, NAME, {"schema_name": "stores", "column": "region"})
    with _executor(workspace) as executor, pytest.raises(InvalidContextError, match=r"qm\.checks.*column"):
        executor.execute(context)
