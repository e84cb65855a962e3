"""Materializing the metric assets in process (issue 6): what a materialization says (served how,
rows, provisional or stable under which cutoff, verification level, preview), what the engine store
holds afterwards, how many backend calls a partition, a range and a re-materialization cost, and the
cache-hint grains rolled up from their family's days without a backend call.

The clock is fixed (``TODAY``: cutoff 2026-11-18, days 19 and 20 provisional) and the figures are
checked against bare Polars over the committed sample (``metric_defs.sample_rows_per_day``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform_tests.defs.metric_defs import (
    SAMPLE_DIR,
    TODAY,
    MetricDefs,
    committed_acs,
    days,
    platform_settings,
    sample_rows_per_day,
)

STABLE = "stable (cutoff 2026-11-18)"
PROVISIONAL = "provisional (cutoff 2026-11-18)"
REVENUE = "retail/revenue"


@pytest.fixture
def retail(tmp_path: Path) -> MetricDefs:
    settings = platform_settings(tmp_path)
    return MetricDefs.build(committed_acs(settings), settings, TODAY)


def window(first: str, last: str) -> DateWindow:
    return DateWindow(dt.date.fromisoformat(first), dt.date.fromisoformat(last))


def test_one_partition_is_served_by_the_backend_described_and_pinned(
    instance: dg.DagsterInstance, retail: MetricDefs
) -> None:
    run = retail.materialize(instance, [REVENUE], partition="2026-11-10")

    assert [call.window for call in run.backend_calls] == [window("2026-11-10", "2026-11-10")]
    assert list(run.materializations(REVENUE)) == ["2026-11-10"]
    meta = run.metadata(REVENUE)
    assert meta["serving_path"] == "backend"
    assert meta["backend_ranges"] == "2026-11-10..2026-11-10"
    assert "backend" in meta["served"]
    assert meta["dagster/row_count"] == sample_rows_per_day(("region", "day"))["2026-11-10"] > 0
    assert meta["bytes"] > 0
    assert meta["stability"] == STABLE
    assert meta["stability_cutoff"] == "2026-11-18"
    assert meta["verification_level"] == "AAA"  # the transactions schema's (data/acs/retail.yaml)
    assert meta["preview"].startswith("| region | day | revenue |")
    assert meta["ledger_run"] == run.result.run_id
    assert run.result.get_asset_observation_events() == []  # one partition: its materialization says it all
    assert retail.pinned_days("revenue", ("region", "day")) == {"2026-11-10": False}


def test_a_range_run_makes_one_backend_call_and_shows_each_partitions_own_figures(
    instance: dg.DagsterInstance, retail: MetricDefs
) -> None:
    # 19..21 September hold no row (the sample starts on the 22nd): they are served, and empty.
    first, last = "2026-09-19", "2026-09-24"
    expected = {day: sample_rows_per_day(("region", "day")).get(day, 0) for day in days(first, last)}
    assert expected["2026-09-19"] == 0
    assert expected["2026-09-22"] > 0

    run = retail.materialize(instance, [REVENUE], first=first, last=last)

    assert [call.window for call in run.backend_calls] == [window(first, last)]
    observations = run.partitions(REVENUE)
    assert {day: o["dagster/row_count"] for day, o in observations.items()} == expected
    assert {day: o.get("stability") for day, o in observations.items() if expected[day]} == dict.fromkeys(
        (day for day in expected if expected[day]), STABLE
    )
    assert {o.get("partition_served") for day, o in observations.items() if expected[day]} == {"backend"}
    materializations = run.materializations(REVENUE)
    assert set(materializations) == set(expected)
    assert run.result.get_asset_observation_events() == [], "no extra event per partition"
    meta = run.metadata(REVENUE)
    assert meta["range_rows"] == sum(expected.values())
    assert meta["backend_ranges"] == f"{first}..{last}"
    assert meta["range_stability"] == STABLE
    assert retail.pinned_days("revenue", ("region", "day")) == dict.fromkeys(expected, False)


def test_rematerializing_serves_a_stable_partition_from_memory_and_recomputes_a_provisional_one(
    instance: dg.DagsterInstance, retail: MetricDefs
) -> None:
    rows = sample_rows_per_day(("region", "day"))
    first = retail.materialize(instance, [REVENUE], first="2026-11-17", last="2026-11-20")
    assert len(first.backend_calls) == 1
    stability = {day: o["stability"] for day, o in first.partitions(REVENUE).items()}
    assert stability == {
        "2026-11-17": STABLE,
        "2026-11-18": STABLE,
        "2026-11-19": PROVISIONAL,
        "2026-11-20": PROVISIONAL,
    }
    assert first.metadata(REVENUE)["range_stability"] == PROVISIONAL  # the range holds provisional days
    assert retail.pinned_days("revenue", ("region", "day")) == {
        "2026-11-17": False,
        "2026-11-18": False,
        "2026-11-19": True,
        "2026-11-20": True,
    }

    stable = retail.materialize(instance, [REVENUE], partition="2026-11-17")
    assert stable.backend_calls == []
    meta = stable.metadata(REVENUE)
    assert meta["serving_path"] == "exact"
    assert meta["backend_ranges"] == "none (served from memory)"
    assert meta["stability"] == STABLE
    assert meta["dagster/row_count"] == rows["2026-11-17"]

    provisional = retail.materialize(instance, [REVENUE], partition="2026-11-20")
    assert [call.window for call in provisional.backend_calls] == [window("2026-11-20", "2026-11-20")]
    meta = provisional.metadata(REVENUE)
    assert meta["serving_path"] == "backend"
    assert meta["stability"] == PROVISIONAL
    assert meta["dagster/row_count"] == rows["2026-11-20"]


def sample_groups(dimensions: Sequence[str], first: str, last: str) -> int:
    """How many groups of ``dimensions`` (region or channel) the sample holds over [first, last]."""
    transactions = pl.scan_parquet(SAMPLE_DIR / "transactions.parquet").filter(
        pl.col("tenant_id") == "acme",
        pl.col("event_date").is_between(dt.date.fromisoformat(first), dt.date.fromisoformat(last)),
    )
    stores = pl.scan_parquet(SAMPLE_DIR / "stores.parquet").select("store_id", "region")
    campaigns = pl.scan_parquet(SAMPLE_DIR / "campaigns.parquet").select("campaign_id", "channel")
    joined = transactions.join(stores, on="store_id", how="left").join(
        campaigns, on="campaign_id", how="left"
    )
    return joined.select(list(dimensions)).unique().collect().height


def memoize_days(retail: MetricDefs, family: str, first: str, last: str) -> None:
    """Serve ``family``'s days into the engine store as its family asset does (base grain, pinned),
    without Dagster: a quarter is 92 partitions and the whole range ~320, whose materialization
    events alone would take tens of seconds on the embedded instance."""
    ac = retail.ac()
    with MetricEngine.open(ac, retail.settings, today=lambda: retail.today) as engine:
        backend = backend_for(ac)
        try:
            engine.serve_metric(
                family, ac.family(family).base_grain, backend=backend, window=window(first, last), pin=True
            )
        finally:
            backend.close()


@dataclass(frozen=True)
class GrainCase:
    """A cache-hint grain asset's partition (None: unpartitioned) and the family days of its
    bucket, materialized through Dagster or (``through_dagster`` false) memoized directly."""

    asset: str
    partition: str | None
    family: str
    first: str
    last: str
    through_dagster: bool
    dimensions: tuple[str, ...]  # the grain's dimensions other than time


GRAINS = [
    pytest.param(
        GrainCase(
            "retail/spend/channel/week", "2026-11-09", "spend", "2026-11-09", "2026-11-15", True, ("channel",)
        ),
        id="weekly",
    ),
    pytest.param(
        GrainCase(
            "retail/revenue/region/month",
            "2026-10-01",
            "revenue",
            "2026-10-01",
            "2026-10-31",
            True,
            ("region",),
        ),
        id="monthly",
    ),
    pytest.param(
        GrainCase(
            "retail/transaction_count/region/quarter",
            "2026-07-01",
            "transaction_count",
            "2026-07-01",
            "2026-09-30",
            False,
            ("region",),
        ),
        id="quarter",
    ),
    pytest.param(
        GrainCase("retail/revenue/region", None, "revenue", "2026-01-01", "2026-11-20", False, ("region",)),
        id="unpartitioned",
    ),
]


@pytest.mark.parametrize("case", GRAINS)
def test_a_cache_hint_grain_rolls_up_from_its_family_days_without_a_backend_call(
    instance: dg.DagsterInstance, retail: MetricDefs, case: GrainCase
) -> None:
    if case.through_dagster:
        days_run = retail.materialize(instance, [f"retail/{case.family}"], first=case.first, last=case.last)
        assert len(days_run.backend_calls) == 1
    else:
        memoize_days(retail, case.family, case.first, case.last)

    run = retail.materialize(instance, [case.asset], partition=case.partition)

    assert run.backend_calls == []
    assert list(run.materializations(case.asset)) == [case.partition]
    meta = run.metadata(case.asset)
    assert meta["serving_path"] == "rollup"
    assert "rollup" in meta["served"]
    # From the memoized day slices: the base grain, or the finer native grain its serve fetched at.
    assert meta["served_from_grain"].endswith(", day")
    assert meta["backend_ranges"] == "none (served from memory)"
    assert meta["dagster/row_count"] == sample_groups(case.dimensions, case.first, case.last) > 0
