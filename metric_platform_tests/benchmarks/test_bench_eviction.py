"""Eviction under a byte budget (issue 4): FD-DAG-aware against LRU on replayed Zipf streams.

Off by default; run with
``.venv/bin/pytest -m benchmark -s metric_platform_tests/benchmarks/test_bench_eviction.py``.
The harness of the workload test (``metric_platform_tests/engine/lifecycle/workload.py``) at a
larger scale: for each seed, one stream replayed on fresh stores without a budget (the ceiling),
then under budgets of a few fractions of what that run memoized, once per policy. Every answer is
checked against the backend's direct aggregate and the budget after every request, so the figures
describe correct runs. They go to ``benchmark_reports/eviction.md`` and to stdout.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.sample_data import generate, write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import GIB
from metric_platform_tests.benchmarks.conftest import RETAIL_AC, env_int, run_header
from metric_platform_tests.benchmarks.report import Report, ms
from metric_platform_tests.engine.lifecycle.workload import (
    POLICIES,
    WINDOWS,
    ZIPF_EXPONENT,
    Policy,
    References,
    Replay,
    catalogue,
    replay,
    sample_spec,
    zipf_stream,
)

pytestmark = pytest.mark.benchmark

DEFAULT_ROWS = 200_000
DEFAULT_REQUESTS = 1_000
SEEDS = (1, 2, 3)
BUDGET_FRACTIONS = (0.1, 0.2, 0.4)  # of the bytes the stream memoizes without a budget
REPORT_PATH = Path(__file__).resolve().parents[2] / "benchmark_reports" / "eviction.md"
TITLE = "# Eviction benchmarks (issue 4)"
INTRO = (
    "Run with `.venv/bin/pytest -m benchmark -s metric_platform_tests/benchmarks/test_bench_eviction.py` "
    "(`METRIC_PLATFORM_BENCH_ROWS` and `METRIC_PLATFORM_BENCH_REQUESTS` override the sample's "
    "transactions and the requests per stream). Hit rates compare the two policies on the same "
    "stream, data and budget; time per request is the serve alone (answer checks not counted)."
)


@dataclass(frozen=True)
class EvictionBench:
    """The session's data and report; the tables fill up seed by seed."""

    ac: AnalyticalContext
    backend: DataAPIBackend
    report: Report
    requests: int
    workdir: Path
    hit_rows: list[tuple[str, ...]] = field(default_factory=list)
    work_rows: list[tuple[str, ...]] = field(default_factory=list)
    # (fraction, policy) -> hit rate of each seed
    rates: dict[tuple[float, str], list[float]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def eviction_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvictionBench]:
    rows = env_int("METRIC_PLATFORM_BENCH_ROWS", DEFAULT_ROWS)
    requests = env_int("METRIC_PLATFORM_BENCH_REQUESTS", DEFAULT_REQUESTS)
    header = run_header(1)
    header["repetitions"] = "one replay per (seed, budget, policy): hit counts do not need repeating"
    report = Report(REPORT_PATH, rows=rows, header=header, title=TITLE, intro=INTRO)
    source = tmp_path_factory.mktemp("eviction_source")
    spec = sample_spec(rows)
    write_parquet(generate(spec), source)
    ac = load_ac(RETAIL_AC, source_path=source)
    report.note(
        "workload",
        f"{rows:,} transactions over {spec.days} days; streams of {requests:,} requests, Zipf (exponent "
        f"{ZIPF_EXPONENT}) over {len(catalogue(ac, ac.families)):,} (family, grain, window) requests: "
        f"{len(ac.families)} families x 16 grains x {len(WINDOWS)} windows of 7 to 184 days",
    )
    backend = backend_for(ac)
    yield EvictionBench(ac, backend, report, requests, tmp_path_factory.mktemp("eviction_stores"))
    backend.close()


@pytest.mark.parametrize("seed", SEEDS)
def test_eviction_policies_on_a_zipf_stream(eviction_bench: EvictionBench, seed: int) -> None:
    bench = eviction_bench
    ac = bench.ac
    stream = zipf_stream(catalogue(ac, ac.families), bench.requests, seed=seed)
    references = References(ac, bench.backend)

    def run(policy: Policy, budget: int, name: str) -> Replay:
        directory = bench.workdir / f"seed{seed}_{name}"
        return replay(
            ac,
            bench.backend,
            stream,
            policy=policy,
            budget=budget,
            directory=directory,
            references=references,
        )

    unlimited = run("lru", GIB, "unlimited")
    assert unlimited.enforcements == 0
    footprint = unlimited.max_evictable
    bench.work_rows.append(_work_row(seed, "none", unlimited))
    for fraction in BUDGET_FRACTIONS:
        budget = int(footprint * fraction)
        results = {policy: run(policy, budget, f"{policy}_{fraction}") for policy in POLICIES}
        for policy, result in results.items():
            assert result.enforcements > 0, "the budget must make the store evict"
            bench.rates.setdefault((fraction, policy), []).append(result.hit_rate)
            bench.work_rows.append(_work_row(seed, f"{fraction:.0%}", result))
        fd_dag, lru = results["fd_dag"], results["lru"]
        bench.hit_rows.append(
            (
                str(seed),
                f"{budget:,} ({fraction:.0%})",
                f"{fd_dag.hit_rate:.1%}",
                f"{lru.hit_rate:.1%}",
                f"{(fd_dag.hit_rate - lru.hit_rate) * 100:+.1f}",
                f"{unlimited.hit_rate:.1%}",
                f"{len(set(stream)):,}",
            )
        )
    bench.report.publish(
        "1. Hit rates: FD-DAG-aware against LRU",
        ("seed", "budget, bytes (of unlimited)", "fd_dag", "lru", "fd_dag - lru (points)", "no budget",
         "distinct requests"),
        bench.hit_rows,
        ("hit = a serve with no backend aggregate (exact or rollup from memoized slices); the budget "
         "counts evictable manifest bytes (Parquet file sizes) and is checked after every request",
         "no budget = the same stream on an unlimited store: the ceiling; budgets are fractions of "
         "the bytes that run ended with, and the per-result cap is the budget itself",
         "the store's clock advances 30 s per request, so ages (both policies' scores) follow the "
         "stream, not how long each serve took"),
    )  # fmt: skip
    bench.report.publish(
        "2. Evictions and backend work",
        ("seed", "budget", "policy", "hits", "enforcements", "units evicted (METRIC / QM)", "bytes evicted",
         "backend aggregates", "map rebuilds", "max evictable bytes", "ms per request"),
        bench.work_rows,
        ("enforcements = budget runs after a serve that evicted something; a unit is the unpinned "
         "slices of one grain sharing one file",
         "map rebuilds = dimension maps (QM entries) read again from the source after being "
         "evicted: not backend aggregates, not counted against hits. Under fd_dag a QM entry's "
         "score is its age divided by the same access factor as a METRIC unit's (fanout 1)"),
    )  # fmt: skip
    summary = [
        (
            f"{fraction:.0%}",
            *(f"{statistics.mean(bench.rates[(fraction, p)]):.1%}" for p in POLICIES),
            f"{sum(f >= lr for f, lr in zip(*(bench.rates[(fraction, p)] for p in POLICIES), strict=True))}"
            f" of {len(bench.rates[(fraction, POLICIES[0])])}",
        )
        for fraction in BUDGET_FRACTIONS
    ]
    bench.report.publish(
        "3. Summary over seeds",
        ("budget (of unlimited)", "mean hit rate fd_dag", "mean hit rate lru", "streams where fd_dag >= lru"),
        summary,
        (),
    )


def _work_row(seed: int, budget: str, result: Replay) -> tuple[str, ...]:
    qm_units = result.units_evicted - result.metric_units_evicted
    return (
        str(seed),
        budget,
        result.policy if budget != "none" else "—",
        f"{result.hits:,}",
        f"{result.enforcements:,}",
        f"{result.metric_units_evicted:,} / {qm_units:,}",
        f"{result.bytes_evicted:,}",
        f"{result.backend_aggregates:,}",
        f"{result.backend_extracts:,}",
        f"{result.max_evictable:,}",
        ms(result.ms_per_request),
    )
