"""The eviction scorer (seed 003 §10), pure: LRU for QM, FD-DAG-aware for METRIC."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest

from metric_platform.engine.lifecycle.eviction_policy import EvictionPolicy
from metric_platform.engine.lifecycle.types import EvictionPolicyKind
from metric_platform.engine.store.keys import Domain
from metric_platform.engine.store.records import ByteTotals, EvictionUnit
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform_tests.engine.conftest import RETAIL_YAML

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
STORE_DAY = ("store", "day")
REGION_MONTH = ("region", "month")


@pytest.fixture(scope="module")
def retail() -> AnalyticalContext:
    return load_ac(RETAIL_YAML)


def unit(
    dataset: str,
    anchor: tuple[str, ...],
    *,
    idle_hours: float,
    accesses: int = 0,
    size: int = 100,
    domain: Domain = Domain.METRIC,
    slices: int = 1,
    path: str | None = None,
) -> EvictionUnit:
    return EvictionUnit(
        domain=domain,
        dataset_id=dataset,
        anchor=anchor,
        path=path or f"{dataset}/{'_'.join(anchor)}/{idle_hours}.parquet",
        rows=tuple((i, 1) for i in range(slices)),
        byte_size=size,
        row_count=10,
        last_access_at=NOW - timedelta(hours=idle_hours),
        access_count=accesses,
        first_day=date(2026, 11, 1),
        last_day=date(2026, 11, 1),
    )


def policy(retail: AnalyticalContext, kind: str = "fd_dag") -> EvictionPolicy:
    return EvictionPolicy(
        retail,
        kind=EvictionPolicyKind(kind),
        # rows per slice: (store, day) 50 a day; (region, month) 3 a month (0.1 a day)
        memoized={"revenue": {STORE_DAY: 50.0, REGION_MONTH: 3.0}},
        requested={"revenue": [("store", "month"), ("region", "day")]},
    )


def test_fanout_counts_the_coarser_nodes_whose_cheapest_path_the_grain_is(retail: AnalyticalContext) -> None:
    p = policy(retail)
    # revenue's nodes: cache_hint (region, day), (region, month), (region); requested (store, month).
    # (store, day) is the only source of (region, day) and (store, month); (region) is cheaper from
    # (region, month); (region, month) is memoized itself.
    assert p.fanout("revenue", STORE_DAY) == 1 + 2
    assert p.fanout("revenue", REGION_MONTH) == 1 + 1  # (region)
    # COUNT_DISTINCT entries serve only their own grain.
    assert p.fanout("unique_customers", STORE_DAY) == 1


def test_fd_dag_score_protects_a_grain_that_serves_others_where_lru_would_not(
    retail: AnalyticalContext,
) -> None:
    day = unit("revenue", STORE_DAY, idle_hours=5, accesses=3, size=100)
    month = unit("revenue", REGION_MONTH, idle_hours=4, accesses=3, size=100)
    totals = ByteTotals(evictable=200, pinned=0)
    lru = policy(retail, "lru").choose(totals, [day, month], target=150, now=NOW)
    dag = policy(retail).choose(totals, [day, month], target=150, now=NOW)
    assert [s.unit for s in lru] == [day], "plain LRU takes the least recently used"
    assert [s.unit for s in dag] == [month], "fd_dag keeps the grain three nodes depend on"
    expected = 5 * 3600 / (3 * (1 + math.log1p(3)))
    assert policy(retail).score(day, NOW) == pytest.approx(expected)


def test_qm_entries_are_lru_among_themselves_on_the_metric_scale_and_retired_families_go_first(
    retail: AnalyticalContext,
) -> None:
    p = policy(retail)
    profile = unit("transactions", ("transactions", "revenue"), idle_hours=2, accesses=50, domain=Domain.QM)
    assert p.score(profile, NOW) == pytest.approx(2 * 3600 / (1 + math.log1p(50)))
    assert policy(retail, "lru").score(profile, NOW) == pytest.approx(2 * 3600)
    older = unit("transactions", ("transactions", "spend"), idle_hours=3, accesses=50, domain=Domain.QM)
    assert p.score(older, NOW) > p.score(profile, NOW)
    gone = unit("no_longer_defined", STORE_DAY, idle_hours=0)
    assert p.score(gone, NOW) == math.inf


def test_choose_stops_once_within_the_target_and_does_nothing_within_budget(
    retail: AnalyticalContext,
) -> None:
    units = [unit("revenue", STORE_DAY, idle_hours=h, size=100, path=f"f{h}") for h in (1, 2, 3, 4)]
    p = policy(retail, "lru")
    assert p.choose(ByteTotals(400, 10_000), units, target=400, now=NOW) == []
    chosen = p.choose(ByteTotals(400, 10_000), units, target=250, now=NOW)
    assert [s.unit.path for s in chosen] == ["f4", "f3"]
    assert [s.unit.path for s in p.choose(ByteTotals(400, 0), units, target=0, now=NOW)] == [
        "f4",
        "f3",
        "f2",
        "f1",
    ]


def test_a_dimension_map_counts_the_rollups_that_go_along_its_edge(retail: AnalyticalContext) -> None:
    p = policy(retail)
    # Cheapest paths through store -> region: (region, day) and (region) from (store, day) is not it
    # for (region) (served from (region, month), no map needed); (region, day) needs the map.
    assert p.map_fanout("store", "region") == 1 + 1
    assert p.map_fanout("campaign", "channel") == 1  # nothing memoized serves a channel node
    fd_map = unit("fd_map", ("store", "region"), idle_hours=4, domain=Domain.QM)
    profile = unit("transactions", ("transactions", "revenue"), idle_hours=4, domain=Domain.QM)
    assert p.score(fd_map, NOW) == pytest.approx(p.score(profile, NOW) / 2)
