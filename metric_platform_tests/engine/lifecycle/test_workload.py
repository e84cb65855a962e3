"""Issue 4 "must show": a skewed request stream over many grains under a small byte budget.

Seeded Zipf streams over every family at 16 grains ({store, region, campaign, channel} x {day,
week, month, quarter}) and 6 windows are replayed through the engine on fresh stores, once per
eviction policy, under a budget of about a fifth of what a stream memoizes without one. After
every request the evictable bytes are within the budget and the answer equals the backend's direct
aggregate. Over the streams, the FD-DAG-aware policy must hit memory at least as often as LRU.

Replays are nearly but not exactly repeatable (see ``workload``): hit counts may move by a request
between runs, less than the margin over the streams (see SEEDS).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from metric_platform.backends.factory import backend_for
from metric_platform.sample_data import generate, write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import GIB
from metric_platform_tests.engine.conftest import RETAIL_YAML
from metric_platform_tests.engine.lifecycle.workload import (
    Policy,
    References,
    catalogue,
    replay,
    sample_spec,
    zipf_stream,
)

ROWS = 20_000
REQUESTS = 300
# The stream memoizes about 280 kB without a budget; 60 kB keeps a fifth of it.
BUDGET = 60_000
# Seeds 1-4 at 60 kB, fd_dag against LRU hits of 300: 155/136, 141/146, 85/78, 157/149. A single
# stream can go either way by a few requests (seed 2: one popular request whose native fetch is
# over the per-result cap), so the claim is checked on the sum over three streams; the benchmark
# (3 seeds x 3 budgets, 1,000 requests, 200k rows) is where the margins are measured.
SEEDS = (1, 2, 3)
MIN_ENFORCEMENTS = 30  # budget enforcements that evicted something, per replay
POLICIES: tuple[Policy, ...] = ("fd_dag", "lru")


@pytest.fixture(scope="module")
def workload_ac(tmp_path_factory: pytest.TempPathFactory) -> AnalyticalContext:
    source = tmp_path_factory.mktemp("workload_sample")
    write_parquet(generate(sample_spec(ROWS)), source)
    return load_ac(RETAIL_YAML, source_path=source)


def test_fd_dag_eviction_stays_in_budget_answers_right_and_hits_at_least_as_often_as_lru(
    workload_ac: AnalyticalContext, tmp_path: Path
) -> None:
    ac = workload_ac
    backend = backend_for(ac)
    references = References(ac, backend)
    hits: dict[Policy, int] = dict.fromkeys(POLICIES, 0)
    try:
        for seed in SEEDS:
            stream = zipf_stream(catalogue(ac, ac.families), REQUESTS, seed=seed)
            # The budget and every answer are checked inside replay, after every request.
            unlimited = replay(
                ac, backend, stream, policy="lru", budget=GIB, directory=tmp_path / f"{seed}-unlimited"
            )
            assert unlimited.enforcements == 0
            for policy in POLICIES:
                result = replay(
                    ac,
                    backend,
                    stream,
                    policy=policy,
                    budget=BUDGET,
                    directory=tmp_path / f"{seed}-{policy}",
                    references=references,
                )
                summary = (
                    seed,
                    policy,
                    result.hits,
                    result.enforcements,
                    result.max_evictable,
                    unlimited.hits,
                )
                assert result.max_evictable <= BUDGET < unlimited.max_evictable, summary
                # A meaningful comparison: eviction is frequent and costs hits, and memory still serves.
                assert result.enforcements >= MIN_ENFORCEMENTS, summary
                assert result.metric_units_evicted >= MIN_ENFORCEMENTS, summary
                assert 0.2 * REQUESTS < result.hits < unlimited.hits, summary
                # A hit is a serve without a backend aggregate; every other serve made exactly one.
                assert result.backend_aggregates == result.requests - result.hits, summary
                hits[policy] += result.hits
    finally:
        backend.close()
    assert hits["fd_dag"] >= hits["lru"], hits
