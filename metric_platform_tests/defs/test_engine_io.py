"""User assets read metric families through the engine input manager (issue 6 item 6).

The shipped example ``[retail, examples, revenue_share_by_region_month]`` receives the monthly
grain as one ``pl.LazyFrame`` served by the engine (the months materialized before come from its
memo, not the backend), and is written as Parquet by dagster-polars under ``home/assets``. A user
asset declaring ``pl.DataFrame`` gets one; a partitioned one gets only its partition's days; an
asset that is not a metric family cannot be read (or written) through it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.acs import load_acs
from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import AggregateRequest, DataAPIBackend, DateWindow
from metric_platform.defs.build import build_definitions
from metric_platform.defs.examples import ENGINE_INPUT
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform_tests.defs.metric_defs import failure_text
from metric_platform_tests.engine.conftest import CountingBackend

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
MONTHLY = dg.AssetKey(["retail", "revenue", "region", "month"])
EXAMPLE = dg.AssetKey(["retail", "examples", "revenue_share_by_region_month"])
MATERIALIZED_MONTHS = ("2026-09-01", "2026-10-01")  # the sample's days are 2026-09-22..2026-11-20
MEMOIZED = DateWindow(dt.date(2026, 9, 1), dt.date(2026, 10, 31))


class Backends:
    """Every backend the engine opened, counting its calls."""

    def __init__(self) -> None:
        self.opened: list[CountingBackend] = []

    def open(self, ac: AnalyticalContext) -> DataAPIBackend:
        backend = CountingBackend(backend_for(ac))
        self.opened.append(backend)
        return backend

    @property
    def aggregates(self) -> list[AggregateRequest]:
        return [request for backend in self.opened for request in backend.aggregates]


class RecordingInputManager(dg.IOManager):
    """The engine input manager, recording the type of each value it hands to an asset."""

    def __init__(self, inner: dg.IOManager) -> None:
        self.inner = inner
        self.loaded: list[tuple[dg.AssetKey, type]] = []

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        self.inner.handle_output(context, obj)

    def load_input(self, context: dg.InputContext) -> object:
        value = self.inner.load_input(context)
        self.loaded.append((context.asset_key, type(value)))
        return value


class Platform:
    def __init__(self, home: Path, instance: dg.DagsterInstance) -> None:
        settings = Settings(home=home)
        self.home = home
        self.instance = instance
        self.backends = Backends()
        defs = build_definitions(
            load_acs(REPO / "data" / "acs", settings),
            settings,
            today=dt.date(2026, 11, 21),
            open_backend=self.backends.open,
        )
        self.assets = [a for a in defs.assets or () if isinstance(a, dg.AssetsDefinition)]
        resources = dict(defs.resources or {})
        engine_input = resources[ENGINE_INPUT]
        assert isinstance(engine_input, dg.IOManager)
        self.input_manager = RecordingInputManager(engine_input)
        self.resources = {**resources, ENGINE_INPUT: self.input_manager}

    def materialize(
        self, key: dg.AssetKey | dg.AssetsDefinition, partition_key: str | None = None
    ) -> dg.ExecuteInProcessResult:
        extra = [key] if isinstance(key, dg.AssetsDefinition) else []
        selected = key.key if isinstance(key, dg.AssetsDefinition) else key
        return dg.materialize(
            [*self.assets, *extra],
            selection=[selected],
            partition_key=partition_key,
            instance=self.instance,
            resources=self.resources,
            raise_on_error=False,
        )


@pytest.fixture
def platform(tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Platform]:
    yield Platform(tmp_path / "platform", instance)


def sample_revenue_by_region_month(last_month: dt.date) -> pl.DataFrame:
    """The oracle: the committed sample's revenue by region and month, straight from its files."""
    transactions = pl.read_parquet(SAMPLE / "transactions.parquet").filter(pl.col("tenant_id") == "acme")
    stores = pl.read_parquet(SAMPLE / "stores.parquet")
    return (
        transactions.join(stores, on="store_id")
        .with_columns(month=pl.col("event_date").dt.truncate("1mo"))
        .filter(pl.col("month") <= last_month)
        .group_by("region", "month")
        .agg(pl.col("revenue").sum())
        .sort("month", "region")
    )


def test_the_example_reads_a_lazy_frame_and_is_written_as_parquet(platform: Platform) -> None:
    for month in MATERIALIZED_MONTHS:
        assert platform.materialize(MONTHLY, month).success
    before = len(platform.backends.aggregates)

    result = platform.materialize(EXAMPLE)

    assert result.success, failure_text(result)
    assert platform.input_manager.loaded == [(MONTHLY, pl.LazyFrame)]
    # The months the grain's partitions memoized are not asked of the backend again.
    for request in platform.backends.aggregates[before:]:
        assert request.window is not None
        assert request.window.end < MEMOIZED.start or request.window.start > MEMOIZED.end, request.window

    written = platform.home / "assets" / "retail" / "examples" / "revenue_share_by_region_month.parquet"
    shares = pl.read_parquet(written)
    per_month = shares.group_by("month").agg(pl.col("share").sum(), pl.len())
    assert per_month["share"].to_list() == pytest.approx([1.0] * per_month.height)
    assert set(per_month["len"]) == {5}  # every region in every month that has revenue
    oracle = sample_revenue_by_region_month(last_month=shares["month"].max())  # type: ignore[arg-type]
    assert dt.date(2026, 10, 1) in shares["month"]
    assert_frame_equal(shares.select("region", "month", "revenue"), oracle, check_exact=False, rel_tol=1e-9)


@dg.asset(ins={"revenue": dg.AssetIn(key=MONTHLY, input_manager_key=ENGINE_INPUT)})
def revenue_as_data_frame(revenue: pl.DataFrame) -> None:
    assert isinstance(revenue, pl.DataFrame)


@dg.asset(
    ins={"revenue": dg.AssetIn(key=MONTHLY, input_manager_key=ENGINE_INPUT)},
    partitions_def=dg.MonthlyPartitionsDefinition(start_date="2026-01-01"),
)
def monthly_revenue_report(revenue: pl.LazyFrame) -> None:
    months = revenue.select(pl.col("month").unique()).collect()["month"].to_list()
    assert months == [dt.date(2026, 10, 1)], months


def test_a_user_asset_gets_the_frame_type_it_declares_over_its_partition(platform: Platform) -> None:
    eager = platform.materialize(revenue_as_data_frame)
    assert eager.success, failure_text(eager)
    partitioned = platform.materialize(monthly_revenue_report, "2026-10-01")
    assert partitioned.success, failure_text(partitioned)

    assert platform.input_manager.loaded == [(MONTHLY, pl.DataFrame), (MONTHLY, pl.LazyFrame)]


@dg.asset(ins={"shares": dg.AssetIn(key=EXAMPLE, input_manager_key=ENGINE_INPUT)})
def reads_the_example_through_the_engine(shares: pl.LazyFrame) -> None:
    """Never runs: the example is no metric family."""


@dg.asset(io_manager_key=ENGINE_INPUT)
def writes_through_the_engine() -> pl.DataFrame:
    return pl.DataFrame({"x": [1]})


@pytest.mark.parametrize(
    ("asset", "message"),
    [
        (
            reads_the_example_through_the_engine,
            "retail/examples/revenue_share_by_region_month is not a metric family asset ([ac, family] or "
            "[ac, family, grain…]); load it with the IO manager that wrote it",
        ),
        (
            writes_through_the_engine,
            "the engine input manager only loads metric families; writes_through_the_engine writes through "
            "the engine itself: give the asset another io_manager_key",
        ),
    ],
    ids=["read-non-family", "write"],
)
def test_a_non_family_asset_cannot_go_through_it(
    platform: Platform, asset: dg.AssetsDefinition, message: str
) -> None:
    result = platform.materialize(asset)

    assert not result.success
    assert message in failure_text(result)
    assert platform.backends.opened == []  # refused before any engine session
