"""Per-run cost of the Dagster instance: Dagster's default SQLite event log (one database per run
plus an index database) against the consolidated one the top-level ``dagster.yaml`` picks (one
database for every run), and the PostgreSQL instance when a server is at hand.

Both SQLite contenders are the top-level template itself, the default one with its
``event_log_storage`` entry removed, so nothing else differs. Runs are in-process ``materialize``
calls (what the main job and the tests do); a run launched by the daemon adds a process start.
Writes ``benchmark_reports/dagster_instance.md``.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url

from metric_platform.defs.instance import (
    DAGSTER_HOME_ENV,
    EMBEDDED_TEMPLATE,
    PG_URL_ENV,
    POOL,
    POSTGRES_TEMPLATE,
    dagster_pg_url,
    open_instance,
    prepare_dagster_home,
)
from metric_platform_tests.benchmarks.conftest import env_int, run_header
from metric_platform_tests.benchmarks.report import Report, Timing, ms, ratio
from metric_platform_tests.conftest import PG_URL_ENV as TEST_PG_URL_ENV

pytestmark = pytest.mark.benchmark

REPORT_PATH = Path(__file__).resolve().parents[2] / "benchmark_reports" / "dagster_instance.md"
TITLE = "# Dagster instance benchmarks (issue 6)"
INTRO = (
    "Run with `METRIC_PLATFORM_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/postgres "
    ".venv/bin/pytest -m benchmark -s metric_platform_tests/benchmarks/test_bench_instance.py` "
    "(without the URL the PostgreSQL rows are left out; `METRIC_PLATFORM_BENCH_INSTANCE_RUNS` sets the "
    "timed runs per contender, default 20). Ratios compare contenders measured in the same run; "
    "absolute times move with the machine's load."
)
DEFAULT_RUNS = 20
PARTITIONS = 30
WORKERS = 4
RUNS_PER_WORKER = 5
PARALLEL_ROUNDS = 3
DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01")
RANGE_TAGS = {
    "dagster/asset_partition_range_start": "2026-01-01",
    "dagster/asset_partition_range_end": f"2026-01-{PARTITIONS:02d}",
}


@dg.asset(pool=POOL)
def trivial() -> int:
    """The smallest run there is: one step, one output, one materialization."""
    return 1


@dg.asset
def unpooled_trivial() -> int:
    """``trivial`` without a pool: what claiming and freeing a slot adds to a run."""
    return 1


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(), pool=POOL)
def ranged() -> dg.MaterializeResult[None]:
    """One step over a partition range, as a single-run backfill of a family asset runs."""
    context = dg.AssetExecutionContext.get()
    return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})


@dataclass(frozen=True)
class Contender:
    name: str
    home: Path


def _default_sqlite_template(directory: Path) -> Path:
    """The top-level template without its event-log choice: Dagster's default SQLite layout."""
    config = yaml.safe_load(EMBEDDED_TEMPLATE.read_text(encoding="utf-8"))
    del config["event_log_storage"]
    directory.mkdir(parents=True, exist_ok=True)
    template = directory / "dagster.yaml"
    template.write_text(yaml.safe_dump(config), encoding="utf-8")
    return template


@contextmanager
def _postgres_contender(tmp_path: Path) -> Iterator[Contender | None]:
    """The PostgreSQL instance on a throwaway database, or None without a test server."""
    server = os.environ.get(TEST_PG_URL_ENV)
    if not server:
        yield None
        return
    admin = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"mp_dagster_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    previous = os.environ.get(PG_URL_ENV)
    os.environ[PG_URL_ENV] = dagster_pg_url(
        make_url(server).set(database=name).render_as_string(hide_password=False)
    )
    try:
        yield Contender(
            "postgres (dagster-postgres)", prepare_dagster_home(tmp_path / "pg", POSTGRES_TEMPLATE)
        )
    finally:
        if previous is None:
            os.environ.pop(PG_URL_ENV, None)
        else:
            os.environ[PG_URL_ENV] = previous
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _materialize(
    instance: dg.DagsterInstance, assets: list[dg.AssetsDefinition], tags: dict[str, str] | None = None
) -> str:
    result = dg.materialize(assets, instance=instance, tags=tags)
    assert result.success
    return result.run_id


@dataclass(frozen=True)
class Lane:
    """One timed series: a run shape on one instance."""

    name: str
    instance: dg.DagsterInstance
    run: Callable[[dg.DagsterInstance], str]


def _interleaved(lanes: list[Lane], runs: int) -> dict[str, Timing]:
    """Every lane in turn, ``runs`` rounds after one warm-up round: the machine's load drifts, and
    taking turns spreads the drift over all lanes instead of giving each lane its own stretch."""
    samples: dict[str, list[float]] = {lane.name: [] for lane in lanes}
    for round_ in range(runs + 1):
        for lane in lanes:
            start = time.perf_counter()
            lane.run(lane.instance)
            if round_ > 0:
                samples[lane.name].append(time.perf_counter() - start)
    return {name: Timing(tuple(values)) for name, values in samples.items()}


def _single_run(instance: dg.DagsterInstance) -> str:
    return _materialize(instance, [trivial])


def _unpooled_run(instance: dg.DagsterInstance) -> str:
    return _materialize(instance, [unpooled_trivial])


def _range_run(instance: dg.DagsterInstance) -> str:
    run_id = _materialize(instance, [ranged], tags=RANGE_TAGS)
    event = instance.get_latest_materialization_event(dg.AssetKey("ranged"))
    assert event is not None
    assert event.asset_materialization is not None
    assert event.asset_materialization.metadata["partitions"].value == PARTITIONS
    return run_id


def _parallel_worker(home: str, runs: int) -> tuple[float, float, list[float]]:
    """One of several processes materializing at once on the same home (a parallel backfill)."""
    samples = []
    with open_instance(Path(home)) as instance:
        start = time.perf_counter()
        for _ in range(runs):
            began = time.perf_counter()
            _materialize(instance, [trivial])
            samples.append(time.perf_counter() - began)
        end = time.perf_counter()
    return start, end, samples


def _parallel(contender: Contender) -> tuple[float, Timing]:
    """Wall time of WORKERS processes doing RUNS_PER_WORKER runs each, and the runs' own times."""
    # spawn, not fork: this process has run Dagster, whose threads a forked child would inherit half-way.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        outcomes = list(
            pool.map(_parallel_worker, [str(contender.home)] * WORKERS, [RUNS_PER_WORKER] * WORKERS)
        )
    # perf_counter is system-wide (CLOCK_MONOTONIC) on Linux, so the workers' readings compare.
    wall = max(end for _, end, _ in outcomes) - min(start for start, _, _ in outcomes)
    return wall, Timing(tuple(t for _, _, samples in outcomes for t in samples))


def test_per_run_cost_of_the_instances(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DAGSTER_HOME_ENV, raising=False)
    runs = env_int("METRIC_PLATFORM_BENCH_INSTANCE_RUNS", DEFAULT_RUNS)
    header = {**run_header(runs), "dagster": dg.__version__}
    range_runs = max(3, runs // 2)
    header["repetitions"] = (
        f"median of {runs} 1-asset runs and {range_runs} range runs per contender, after 1 warm-up "
        "round; the contenders take turns"
    )
    report = Report(
        REPORT_PATH, rows=runs, header=header, title=TITLE, intro=INTRO, unit="timed runs per contender"
    )
    default = Contender(
        "default SQLite (a database per run)",
        prepare_dagster_home(tmp_path / "default", _default_sqlite_template(tmp_path / "templates")),
    )
    consolidated = Contender(
        "consolidated SQLite (dagster.yaml)",
        prepare_dagster_home(tmp_path / "consolidated", EMBEDDED_TEMPLATE),
    )

    with _postgres_contender(tmp_path) as postgres, ExitStack() as stack:
        contenders = [default, consolidated, *([postgres] if postgres else [])]
        # Only the consolidated event log reads DAGSTER_HOME (open_instance sets it); the others
        # derive every path from their own directory or database, so all can be open at once.
        instances = {
            c.name: stack.enter_context(
                open_instance(c.home) if c is consolidated else dg.DagsterInstance.from_config(str(c.home))
            )
            for c in contenders
        }
        before = {name: len(instance.get_run_records()) for name, instance in instances.items()}
        no_pool = "no pool"
        single = _interleaved(
            [Lane(name, instance, _single_run) for name, instance in instances.items()]
            + [Lane(no_pool, instances[consolidated.name], _unpooled_run)],
            runs,
        )
        ranges = _interleaved([Lane(n, i, _range_run) for n, i in instances.items()], range_runs)
        for name, instance in instances.items():
            extra = runs + 1 if name == consolidated.name else 0  # the no-pool lane's runs
            assert len(instance.get_run_records()) == before[name] + runs + range_runs + 2 + extra
        unpooled = single[no_pool]

    base_single, base_range = single[default.name].median_ms, ranges[default.name].median_ms
    rows = []
    for c in contenders:
        one, span = single[c.name], ranges[c.name]
        rows.append(
            (
                c.name,
                ms(one.median_ms),
                ms(one.p95_ms),
                ratio(one.median_ms, base_single),
                ms(span.median_ms),
                ms(span.median_ms / PARTITIONS),
                ratio(span.median_ms, base_range),
            )
        )
    report.publish(
        "Per-run cost: in-process materialize",
        (
            "instance",
            "1-asset run median ms",
            "p95 ms",
            "vs default",
            f"{PARTITIONS}-partition single run median ms",
            "per partition ms",
            "vs default",
        ),
        rows,
        (
            "A 1-asset run is the fixed cost every run pays (run record, a dozen events, the step).",
            f"The assets declare pool={POOL!r}, as engine-backed assets do; the same 1-asset run without "
            f"a pool on the consolidated instance: median {ms(unpooled.median_ms)} ms (claiming and freeing "
            "the slot is the difference).",
            f"The range run is one step over {PARTITIONS} daily partitions (a single-run backfill); "
            "its per-partition figure is the run's time divided by the partitions.",
        ),
    )

    # The parallel figures swing with other work on the machine: take turns, keep each side's median.
    rounds: dict[str, list[tuple[float, Timing]]] = {default.name: [], consolidated.name: []}
    for _ in range(PARALLEL_ROUNDS):
        for c in (default, consolidated):
            rounds[c.name].append(_parallel(c))
    walls = {name: statistics.median(wall for wall, _ in results) for name, results in rounds.items()}
    per_run = {
        name: Timing(tuple(t for _, timing in results for t in timing.samples))
        for name, results in rounds.items()
    }
    report.publish(
        f"Parallel runs: {WORKERS} processes x {RUNS_PER_WORKER} 1-asset runs on one home",
        (
            "instance",
            "wall s (median of rounds)",
            "runs/s",
            "vs default (wall)",
            "run median ms",
            "run p95 ms",
        ),
        [
            (
                name,
                f"{walls[name]:.2f}",
                f"{WORKERS * RUNS_PER_WORKER / walls[name]:.1f}",
                ratio(walls[name], walls[default.name]),
                ms(per_run[name].median_ms),
                ms(per_run[name].p95_ms),
            )
            for name in rounds
        ],
        (
            "Concurrent writers of one SQLite event log wait for its write lock; this checks the "
            "consolidated file does not make parallel backfill runs slower than a database per run.",
            f"{PARALLEL_ROUNDS} rounds, the two instances taking turns; each round is a new pool of "
            "spawned processes (their start-up is outside the wall time).",
        ),
    )
