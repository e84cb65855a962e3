"""Ledger and execution-door costs (issue 5): appends, the projector, and the door around a serve.

Off by default; run with
``METRIC_PLATFORM_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/postgres
.venv/bin/pytest -m benchmark -s metric_platform_tests/benchmarks/test_bench_ledger.py``
(without the URL the PostgreSQL rows are skipped). Every figure is compared with a baseline
measured in the same run, on the same machine and the same database:

1. appends: ``RunEventStore.append`` (one event per transaction) and ``append_in`` (100 per
   transaction) against a bare SQLAlchemy INSERT of the same rows, at the same batch size, into a
   table with the ledger's columns and no key, index or allocator; then 4 spawned writer processes;
2. the projector: ``Projector(engine).poll()`` folding a ledger of 100 runs from scratch against the
   pure fold (``project_run``) of the same events in memory;
3. the execution door: one family served at its base grain on an exact memo hit, directly
   (``MetricEngine.serve_metric``), through ``MetricExecutionEngine.execute`` without a recorder,
   and through ``run_work`` (a one-step ledger run) on a SQLite and a PostgreSQL platform database.

What is timed is checked: the ledger's contents (gapless runSeq, every event announced once),
snapshots equal to the pure fold, served frames equal to the direct serve, dry runs writing
nothing. The figures go to ``benchmark_reports/ledger.md`` and to stdout.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import multiprocessing
import os
import queue
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal
from sqlalchemy.engine import Engine

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DateWindow
from metric_platform.db import create_db_engine, read_transaction, write_transaction
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.serving.types import PathKind, Served
from metric_platform.engine.store.migrations_runner import MIGRATIONS as MANIFEST_MIGRATIONS
from metric_platform.execution.context import ExecutionContext
from metric_platform.execution.engine import MetricExecutionEngine
from metric_platform.execution.results import ExecutionResult, ExecutionStatus
from metric_platform.ledger.events import ArtifactRef, EventIdentity, EventType, NewEvent, StoredEvent
from metric_platform.ledger.partitions import month_start
from metric_platform.ledger.projection import RunSnapshot, RunStatus, StepStatus, project_run
from metric_platform.ledger.projector import DEFAULT_BATCH_SIZE, ProjectionReport, Projector, load_snapshot
from metric_platform.ledger.schema import outbox, projector_state, run_events, run_snapshots, runs
from metric_platform.ledger.store import (
    AppendOutcome,
    AppendResult,
    RunEventStore,
    event_row,
    stored_event_from_row,
)
from metric_platform.platform_db import MIGRATIONS as PLATFORM_MIGRATIONS
from metric_platform.platform_db import open_platform_db
from metric_platform.sample_data import SampleSpec, generate, write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.settings import Settings
from metric_platform.works.engine_works import engine_works
from metric_platform.works.runner import batch_context, run_work
from metric_platform.works.workspace import EngineWorkspace
from metric_platform_tests.benchmarks.conftest import RETAIL_AC, env_int, run_header
from metric_platform_tests.benchmarks.report import Report, Timing, measure, ms, ratio
from metric_platform_tests.conftest import PG_URL_ENV
from metric_platform_tests.pg_schema import fresh_pg_schema

pytestmark = pytest.mark.benchmark

DEFAULT_EVENTS = 2_000  # appended per contender and dialect; the projector folds 10x as many
APPEND_RUNS = 20
BATCH = 100  # events per append_in transaction
WRITERS = 4
PROJECTED_RUNS = 100
FILL_BATCH = 1_000  # events per transaction when filling the projector's ledger (untimed)
PROJECTOR_REPS = 3
SINGLE_BATCH_REPS = 2
DOOR_CALLS = 40
PLAN = "bench-plan"
REPORT_PATH = Path(__file__).resolve().parents[2] / "benchmark_reports" / "ledger.md"
TITLE = "# Ledger benchmarks (issue 5)"
INTRO = (
    "Run with `METRIC_PLATFORM_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/postgres "
    ".venv/bin/pytest -m benchmark -s metric_platform_tests/benchmarks/test_bench_ledger.py` "
    "(`METRIC_PLATFORM_BENCH_LEDGER_EVENTS` overrides the 2,000 appends; the projector folds 10x "
    "as many). Every ratio compares a contender with its baseline measured in the same run, on the "
    "same machine and database; absolute times move with the machine's load, ratios much less."
)
# The door's request: a family at its declared base grain over a week well before the stability
# cutoff (hold-off 3 days before TODAY), so that every serve after the first is an exact memo hit.
FAMILY, BASE_GRAIN = "conversions", ("store", "day")
TODAY = dt.date(2026, 11, 21)
WEEK = (dt.date(2026, 11, 1), dt.date(2026, 11, 7))
DOOR_SAMPLE = SampleSpec(rows=3_000, days=30, end_date=dt.date(2026, 11, 20))
SERVE = "engine.serve"
# What a dry run of the door does not write: the run's four events and the memo hit's access.
DRY_SUPPRESSED = {"ledger.append": 4, "engine.record_access": 1}
ONE_STEP_RUN = [
    EventType.RUN_STARTED,
    EventType.STEP_STARTED,
    EventType.STEP_COMPLETED,
    EventType.RUN_COMPLETED,
]

# The baseline's table: the ledger's columns and nothing else (no key, no index, no allocator).
_plain_metadata = sa.MetaData()
plain_events = sa.Table(
    "bench_plain_events",
    _plain_metadata,
    *(sa.Column(c.name, c.type, nullable=c.nullable) for c in run_events.columns),
)


@dataclass(frozen=True)
class Target:
    """A migrated, empty platform database of one dialect."""

    dialect: str
    url: str


@dataclass
class LedgerBench:
    """The run's report and the rows its tables accumulate over the dialects."""

    report: Report
    events: int
    workdir: Path
    append_rows: list[tuple[str, ...]] = field(default_factory=list)
    projector_rows: list[tuple[str, ...]] = field(default_factory=list)
    # (dialect, writer) -> events/s of one process, for the 4-process rows
    one_process: dict[tuple[str, str], float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def ledger_bench(tmp_path_factory: pytest.TempPathFactory) -> LedgerBench:
    events = env_int("METRIC_PLATFORM_BENCH_LEDGER_EVENTS", DEFAULT_EVENTS)
    if events % BATCH:
        msg = f"METRIC_PLATFORM_BENCH_LEDGER_EVENTS must be a multiple of {BATCH}, got {events}"
        raise pytest.UsageError(msg)
    header = run_header(1)
    header["repetitions"] = "each table says what one sample is; timing starts after a warm-up"
    report = Report(
        REPORT_PATH,
        rows=events,
        header=header,
        title=TITLE,
        intro=INTRO,
        unit="appended events per contender and dialect",
    )
    return LedgerBench(report, events, tmp_path_factory.mktemp("ledger_bench"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'platform.sqlite'}"
        open_platform_db(url).dispose()
        yield Target("sqlite", url)
        return
    with fresh_pg_schema(str(request.getfixturevalue("pg_url"))) as url:
        open_platform_db(url).dispose()
        yield Target("postgres", url)


# -- events and rows -------------------------------------------------------------------------------


def append_events(prefix: str, count: int, *, offset: int = 0) -> list[NewEvent]:
    """``count`` StepStarted events with distinct keys, round-robin over the runs from ``offset``."""
    events = []
    for i in range(count):
        step_id = f"{prefix}-{i:05d}"
        identity = EventIdentity(f"run-{(i + offset) % APPEND_RUNS:02d}", step_id, 1, 0, PLAN)
        events.append(NewEvent(identity, EventType.STEP_STARTED, {"work": SERVE, "step": step_id}))
    return events


def plain_rows(events: Sequence[NewEvent]) -> list[dict[str, Any]]:
    """The rows the store writes for ``events``, numbered naively: what the baseline inserts."""
    seqs: Counter[str] = Counter()
    rows = []
    for position, event in enumerate(events, start=1):
        identity = event.identity
        seqs[identity.run_id] += 1
        row = event_row(
            event,
            run_epoch=month_start(event.emitted_at.date()),
            run_seq=seqs[identity.run_id],
            persisted_at=event.emitted_at,
        )
        rows.append({**row, "position": position, "tx_id": 0})
    missing = set(plain_events.c.keys()) - set(rows[0]) if rows else set()
    assert not missing, f"ledger columns {sorted(missing)} are new: give the baseline's rows them too"
    return rows


def run_log(run_id: str, count: int) -> list[NewEvent]:
    """A whole run of ``count`` events: RunStarted, StepStarted/StepCompleted pairs, RunCompleted."""
    run = EventIdentity(run_id, plan_version=PLAN)
    events = [NewEvent(run, EventType.RUN_STARTED, {"label": "bench"})]
    for s in range((count - 2) // 2):
        step = EventIdentity(run_id, f"step-{s:03d}", 1, 0, PLAN)
        artifact = ArtifactRef(
            uri=f"engine://bench/{run_id}/{s}",
            kind="engine.entry",
            sha256=hashlib.sha256(f"{run_id}/{s}".encode()).hexdigest(),
            size_bytes=4096 + s,
        )
        events.append(NewEvent(step, EventType.STEP_STARTED, {"work": SERVE}))
        completed = {"artifacts": [artifact.to_json()], "summary": {"rows": s}}
        events.append(NewEvent(step, EventType.STEP_COMPLETED, completed))
    events.append(NewEvent(run, EventType.RUN_COMPLETED, {"label": "bench"}))
    return events


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- checks ----------------------------------------------------------------------------------------


def check_ledger(engine: Engine, *, expected: int) -> None:
    """``expected`` events, runSeq 1..n per run agreeing with ``ledger_runs``, each announced once."""
    with read_transaction(engine) as conn:
        total, keys = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(run_events.c.idempotency_key)))
        ).one()
        per_run = conn.execute(
            sa.select(
                run_events.c.run_id,
                sa.func.count(),
                sa.func.min(run_events.c.run_seq),
                sa.func.max(run_events.c.run_seq),
            ).group_by(run_events.c.run_id)
        ).all()
        last_seqs = {r.run_id: r.last_seq for r in conn.execute(sa.select(runs.c.run_id, runs.c.last_seq))}
        announced = conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()
    assert total == keys == expected, f"{total} events ({keys} keys) stored, {expected} appended"
    for run_id, count, first, last in per_run:
        assert first == 1 and last == count == last_seqs[run_id], f"run {run_id}: runSeq has a gap"
    assert announced == expected, "every appended event is announced exactly once"


def count_rows(url: str, table: sa.Table) -> int:
    engine = create_db_engine(url)
    try:
        with read_transaction(engine) as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def statements_per_call(engine: Engine, call: Callable[[], object], calls: int = 10) -> float:
    """SQL statements ``call`` sends (BEGIN not counted: there the dialects differ, not the code)."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(calls):
            call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    return len(sent) / calls


# -- 1. appends ------------------------------------------------------------------------------------

APPEND_HEADER = (
    "dialect",
    "writer",
    "processes",
    "events",
    "ms per event, median",
    "ms per event, p95",
    "events/s",
    "cost vs bare INSERT",
    "events/s vs 1 process",
)


def per_event(timing: Timing, events_per_sample: int) -> Timing:
    return Timing(tuple(s / events_per_sample for s in timing.samples))


def throughput(timing: Timing, events_per_sample: int) -> float:
    return events_per_sample * len(timing.samples) / sum(timing.samples)


def append_row(
    dialect: str,
    writer: str,
    *,
    processes: int,
    events: int,
    timing: Timing,
    rate: float,
    cost: str,
    scaling: str = "—",
) -> tuple[str, ...]:
    return (
        dialect,
        writer,
        str(processes),
        f"{events:,}",
        f"{timing.median_ms:.3f}",
        f"{timing.p95_ms:.3f}",
        f"{rate:,.0f}",
        cost,
        scaling,
    )


def publish_appends(bench: LedgerBench) -> None:
    bench.report.publish(
        "1. Appends: cost per event against a bare INSERT",
        APPEND_HEADER,
        bench.append_rows,
        (
            "bare INSERT = `sa.insert(table)` of the same rows (same columns, JSON payloads and "
            "timestamps, runSeq and position numbered in Python) into a table with no key, no index "
            "and no allocator, in the same `db.write_transaction` (BEGIN IMMEDIATE on SQLite); "
            "its rows are built before timing, the store's events are not",
            "one process: cost = ratio of the per-event medians (one sample = one transaction, "
            f"divided by its events); 20 runs round-robin; the {APPEND_RUNS} warm-up appends create "
            "the runs' rows, so timed appends find them in place (steady state of a running run)",
            f"{WRITERS} processes: spawned, each appending its own share to the same {APPEND_RUNS} "
            "runs after a barrier; events/s over the wall time from the first start to the last end; "
            "cost = ratio of throughputs; latencies are each call's own (lock waits included)",
            "events/s vs 1 process: the throughput of the same writer in one process (above); with "
            "fewer CPUs than writers (plus, on PostgreSQL, one server backend each) these rows measure "
            "CPU sharing as much as lock waits, and they move the most from run to run",
        ),
    )


def test_append_cost(ledger_bench: LedgerBench, target: Target) -> None:
    """Per-event cost of the store's appends against bare INSERTs, one event and 100 per transaction."""
    n, dialect = ledger_bench.events, target.dialect
    warm, batches = APPEND_RUNS, n // BATCH
    engine = open_platform_db(target.url)
    try:
        _plain_metadata.create_all(engine)
        store = RunEventStore(engine)
        insert = sa.insert(plain_events)

        plain_single = iter(plain_rows(append_events("bare", n + warm)))

        def bare_one() -> None:
            with write_transaction(engine) as conn:
                conn.execute(insert, next(plain_single))

        bare, _ = measure(bare_one, reps=n, warmup=warm)

        single = iter(append_events("one", n + warm))
        appended, last = measure(lambda: store.append(next(single)), reps=n, warmup=warm)
        assert last.outcome is AppendOutcome.APPENDED

        plain_batches = iter(chunked(plain_rows(append_events("barebatch", n + BATCH)), BATCH))

        def bare_batch() -> None:
            with write_transaction(engine) as conn:
                conn.execute(insert, next(plain_batches))

        bare_batched, _ = measure(bare_batch, reps=batches, warmup=1)

        # Each transaction takes its runs' locks in one order (sorted run ids), as append_in asks.
        event_batches = iter(
            sorted(chunk, key=lambda e: e.identity.run_id)
            for chunk in chunked(append_events("batch", n + BATCH), BATCH)
        )

        def append_batch() -> list[AppendResult]:
            with write_transaction(engine) as conn:
                return [store.append_in(conn, event) for event in next(event_batches)]

        batched, results = measure(append_batch, reps=batches, warmup=1)
        assert [r.outcome for r in results] == [AppendOutcome.APPENDED] * BATCH

        probes = iter(append_events("probe", 10, offset=3))
        store_statements = statements_per_call(engine, lambda: store.append(next(probes)))
        plain_probes = iter(plain_rows(append_events("plainprobe", 10)))
        bare_statements = statements_per_call(engine, lambda: bare_one_of(engine, insert, plain_probes))
        check_ledger(engine, expected=(n + warm) + (n + BATCH) + 10)
    finally:
        engine.dispose()
    assert count_rows(target.url, plain_events) == (n + warm) + (n + BATCH) + 10

    batch_bare, batch_store = per_event(bare_batched, BATCH), per_event(batched, BATCH)
    one_bare, one_store = throughput(bare, 1), throughput(appended, 1)
    ledger_bench.one_process[(dialect, "bare")] = one_bare
    ledger_bench.one_process[(dialect, "store")] = one_store
    base = "1.00x (baseline)"
    ledger_bench.append_rows += [
        append_row(
            dialect,
            "bare INSERT, 1 per transaction",
            processes=1,
            events=n,
            timing=bare,
            rate=one_bare,
            cost=base,
        ),
        append_row(
            dialect,
            "`RunEventStore.append`, 1 per transaction",
            processes=1,
            events=n,
            timing=appended,
            rate=one_store,
            cost=ratio(appended.median_ms, bare.median_ms),
        ),
        append_row(
            dialect,
            f"bare INSERT, {BATCH} per transaction",
            processes=1,
            events=n,
            timing=batch_bare,
            rate=throughput(bare_batched, BATCH),
            cost=base,
        ),
        append_row(
            dialect,
            f"`RunEventStore.append_in`, {BATCH} per transaction",
            processes=1,
            events=n,
            timing=batch_store,
            rate=throughput(batched, BATCH),
            cost=ratio(batch_store.median_ms, batch_bare.median_ms),
        ),
    ]
    ledger_bench.report.note(
        f"SQL statements per event ({dialect})",
        f"{store_statements:.1f} for `RunEventStore.append`, {bare_statements:.1f} for the bare INSERT "
        "(BEGIN not counted)",
    )
    publish_appends(ledger_bench)


def bare_one_of(engine: Engine, insert: Any, rows: Iterator[dict[str, Any]]) -> None:
    with write_transaction(engine) as conn:
        conn.execute(insert, next(rows))


@dataclass(frozen=True)
class WriterJob:
    """One spawned writer's share: ``count`` timed appends of each kind, after one warm-up each."""

    url: str
    writer: int
    count: int


WRITER_KINDS = ("bare", "store")  # in this order, each after a barrier: the phases never overlap


def writer_process(job: WriterJob, barrier: Any, results: Any) -> None:
    """Append the writer's share of each kind after a barrier; report (kind, start, end, per-call s)."""
    engine = open_platform_db(job.url)
    try:
        for kind in WRITER_KINDS:
            # Offsets spread the writers over the runs: they do not start in lockstep on one run.
            events = append_events(f"{kind}-w{job.writer}", job.count + 1, offset=job.writer * 5)
            call = _store_call(engine, events) if kind == "store" else _bare_call(engine, events)
            call()  # warm-up: the connection, and the run row of the writer's first run
            barrier.wait(timeout=120)
            samples = []
            start = time.monotonic()
            for _ in range(job.count):
                began = time.perf_counter()
                call()
                samples.append(time.perf_counter() - began)
            results.put((kind, start, time.monotonic(), samples))
    finally:
        engine.dispose()


def _store_call(engine: Engine, events: Sequence[NewEvent]) -> Callable[[], None]:
    store, pending = RunEventStore(engine), iter(events)

    def call() -> None:
        result = store.append(next(pending))
        assert result.outcome is AppendOutcome.APPENDED, result.outcome

    return call


def _bare_call(engine: Engine, events: Sequence[NewEvent]) -> Callable[[], None]:
    rows, insert = iter(plain_rows(events)), sa.insert(plain_events)
    return lambda: bare_one_of(engine, insert, rows)


def run_writers(url: str, total: int) -> dict[str, tuple[Timing, float]]:
    """``WRITERS`` spawned processes appending ``total`` events of each kind: for each kind, the
    per-call latencies and the events/s over the wall time from the first start to the last end."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WRITERS), ctx.Queue()
    jobs = [WriterJob(url, w, total // WRITERS) for w in range(WRITERS)]
    procs = [ctx.Process(target=writer_process, args=(job, barrier, results)) for job in jobs]
    for proc in procs:
        proc.start()
    reports = []
    try:
        # Read before joining: a child exits only once the queue has taken its samples.
        for _ in range(WRITERS * len(WRITER_KINDS)):
            reports.append(results.get(timeout=180))
    except queue.Empty:
        pytest.fail(f"a writer died or hung; exit codes {[p.exitcode for p in procs]}")
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
    assert [p.exitcode for p in procs] == [0] * WRITERS
    out = {}
    for kind in WRITER_KINDS:
        mine = [r for r in reports if r[0] == kind]
        wall = max(r[2] for r in mine) - min(r[1] for r in mine)
        samples = tuple(s for r in mine for s in r[3])
        assert len(samples) == total
        out[kind] = (Timing(samples), total / wall)
    return out


def test_concurrent_append_throughput(ledger_bench: LedgerBench, target: Target) -> None:
    """4 spawned writers appending to the same runs: throughput against 4 writers of bare INSERTs."""
    n, dialect = ledger_bench.events, target.dialect
    engine = open_platform_db(target.url)
    _plain_metadata.create_all(engine)
    engine.dispose()
    measured = run_writers(target.url, n)
    (bare, bare_rate), (store, store_rate) = measured["bare"], measured["store"]
    engine = open_platform_db(target.url)
    try:
        check_ledger(engine, expected=n + WRITERS)
    finally:
        engine.dispose()
    assert count_rows(target.url, plain_events) == n + WRITERS

    def scaling(kind: str, rate: float) -> str:
        return ratio(rate, ledger_bench.one_process.get((dialect, kind)))

    ledger_bench.append_rows += [
        append_row(
            dialect,
            "bare INSERT, 1 per transaction",
            processes=WRITERS,
            events=n,
            timing=bare,
            rate=bare_rate,
            cost="1.00x (baseline)",
            scaling=scaling("bare", bare_rate),
        ),
        append_row(
            dialect,
            "`RunEventStore.append`, 1 per transaction",
            processes=WRITERS,
            events=n,
            timing=store,
            rate=store_rate,
            cost=ratio(bare_rate, store_rate),
            scaling=scaling("store", store_rate),
        ),
    ]
    publish_appends(ledger_bench)


# -- 2. the projector ------------------------------------------------------------------------------


def read_all(engine: Engine) -> dict[str, list[StoredEvent]]:
    """Every stored event, by run, in discovery order (which is runSeq order within a run)."""
    by_run: dict[str, list[StoredEvent]] = {}
    with read_transaction(engine) as conn:
        rows = conn.execute(sa.select(run_events).order_by(run_events.c.tx_id, run_events.c.position))
        for row in rows.mappings():
            by_run.setdefault(str(row["run_id"]), []).append(stored_event_from_row(row))
    return by_run


def fold_all(by_run: dict[str, list[StoredEvent]]) -> dict[str, RunSnapshot]:
    return {run_id: project_run(run_id, events) for run_id, events in by_run.items()}


def forget_projection(engine: Engine) -> None:
    """Drop every snapshot and the watermark: the next poll folds the whole ledger again."""
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(run_snapshots))
        conn.execute(sa.delete(projector_state))


def check_projection(
    engine: Engine, report: ProjectionReport, folded: dict[str, RunSnapshot], per_run: int
) -> None:
    """The poll applied every event, halted nothing, and stored exactly the pure fold's snapshots."""
    assert report.applied == sum(s.events_applied for s in folded.values()) and not report.halted_runs
    assert report.runs_updated == tuple(sorted(folded))
    for run_id, expected in folded.items():
        assert load_snapshot(engine, run_id) == expected, f"run {run_id}: snapshot differs from the fold"
        assert expected.status is RunStatus.COMPLETED and expected.events_applied == per_run
        assert len(expected.steps) == (per_run - 2) // 2
        assert all(step.status is StepStatus.SUCCESS for step in expected.steps)


def test_projector_throughput(ledger_bench: LedgerBench, target: Target) -> None:
    """A poll folding the whole ledger from scratch against the pure fold of the same events."""
    total, dialect = 10 * ledger_bench.events, target.dialect
    per_run = total // PROJECTED_RUNS
    assert per_run >= 2 and per_run % 2 == 0, per_run
    logs = [run_log(f"proj-{r:03d}", per_run) for r in range(PROJECTED_RUNS)]
    # Interleaved as concurrent runs write them: every run's i-th event, then every run's next one.
    order = [log[i] for i in range(per_run) for log in logs]
    engine = open_platform_db(target.url)
    try:
        store = RunEventStore(engine)
        started = time.perf_counter()
        for chunk in chunked(order, FILL_BATCH):
            with write_transaction(engine) as conn:
                for event in chunk:
                    store.append_in(conn, event)
        fill_seconds = time.perf_counter() - started
        check_ledger(engine, expected=total)

        stored = read_all(engine)
        folded_timing, folded = measure(lambda: fold_all(stored), reps=PROJECTOR_REPS)
        read_timing, read_folded = measure(lambda: fold_all(read_all(engine)), reps=PROJECTOR_REPS)
        assert read_folded == folded
        # A poll lasts seconds: no warm-up beyond the fill and the folds above, which read every row.
        reset = functools.partial(forget_projection, engine)
        polled, report = measure(Projector(engine).poll, reps=PROJECTOR_REPS, warmup=0, setup=reset)
        check_projection(engine, report, folded, per_run)
        one_batch = Projector(engine, batch_size=total)
        single, report = measure(one_batch.poll, reps=SINGLE_BATCH_REPS, warmup=0, setup=reset)
        check_projection(engine, report, folded, per_run)
    finally:
        engine.dispose()

    def row(contender: str, timing: Timing, reference: Timing | None) -> tuple[str, ...]:
        return (
            dialect,
            contender,
            f"{total:,}",
            str(PROJECTED_RUNS),
            ms(timing.median_ms),
            f"{total / (timing.median_ms / 1e3):,.0f}",
            "1.00x (baseline)" if reference is None else ratio(timing.median_ms, reference.median_ms),
        )

    ledger_bench.projector_rows += [
        row("`project_run` over the events in memory", folded_timing, None),
        row("read + `stored_event_from_row` + `project_run`", read_timing, folded_timing),
        row("`Projector(engine).poll()` from an empty projection", polled, folded_timing),
        row(f"the same poll in one batch (`batch_size={total}`)", single, folded_timing),
    ]
    ledger_bench.report.note(
        f"projector ledger ({dialect})",
        f"{total:,} events appended with `append_in`, {FILL_BATCH:,} per transaction, "
        f"in {fill_seconds:.1f} s",
    )
    ledger_bench.report.publish(
        "2. Projector: a full fold through the database against the pure fold",
        ("dialect", "contender", "events", "runs", "median ms", "events/s", "cost vs pure fold"),
        ledger_bench.projector_rows,
        (
            f"one sample folds every event of every run; folds: median of {PROJECTOR_REPS} after 1 "
            f"warm-up; polls: median of {PROJECTOR_REPS} (one batch: {SINGLE_BATCH_REPS}), no "
            "warm-up (a poll lasts seconds, and the rows were just written and read)",
            f"each run: RunStarted, {(per_run - 2) // 2} StepStarted/StepCompleted pairs (one "
            "artifact each), RunCompleted, interleaved across runs as concurrent runs append them",
            f"poll: batches of {DEFAULT_BATCH_SIZE:,} events (the default), snapshots and watermark "
            "written per batch; "
            "before each sample the snapshots and the watermark are deleted (untimed); one batch: "
            "the same poll with `batch_size` = every event, each snapshot decoded and written once",
            "every stored snapshot equals the pure fold's; every run COMPLETED, every step SUCCESS",
        ),
    )


# -- 3. the execution door -------------------------------------------------------------------------


def check_served(served: Served, reference: pl.DataFrame) -> None:
    assert served.provenance.path.kind is PathKind.EXACT, served.provenance.path.kind
    assert_frame_equal(served.frame.collect(), reference)


def check_result(result: ExecutionResult, reference: pl.DataFrame) -> None:
    assert result.status is ExecutionStatus.COMPLETED and result.outcome is not None
    assert result.outcome.summary["path"] == PathKind.EXACT.value
    served = result.outcome.value
    assert isinstance(served, Served)
    check_served(served, reference)


def ledger_runs(url: str) -> dict[str, list[EventType]]:
    """Every run in the ledger at ``url``: its event types in runSeq order."""
    engine = create_db_engine(url)
    try:
        with read_transaction(engine) as conn:
            rows = conn.execute(
                sa.select(run_events.c.run_id, run_events.c.event_type).order_by(
                    run_events.c.run_id, run_events.c.run_seq
                )
            ).all()
    finally:
        engine.dispose()
    out: dict[str, list[EventType]] = {}
    for run_id, event_type in rows:
        out.setdefault(run_id, []).append(EventType(event_type))
    return out


def check_one_step_runs(url: str, expected_runs: int) -> None:
    """``expected_runs`` one-step runs in the ledger, each projected COMPLETED with its step SUCCESS."""
    recorded = ledger_runs(url)
    assert len(recorded) == expected_runs
    assert all(types == ONE_STEP_RUN for types in recorded.values())
    engine = open_platform_db(url)
    try:
        Projector(engine).poll()
        for run_id in recorded:
            snapshot = load_snapshot(engine, run_id)
            assert snapshot is not None and snapshot.status is RunStatus.COMPLETED
            assert [step.status for step in snapshot.steps] == [StepStatus.SUCCESS]
    finally:
        engine.dispose()


def serve_context(workspace: EngineWorkspace, *, dry_run: bool = False) -> ExecutionContext:
    """The CLI's context for the door's request, with a run id of its own."""
    params = {"family": FAMILY, "anchor": list(BASE_GRAIN)}
    return batch_context(workspace, SERVE, params, days=WEEK, dry_run=dry_run)


@dataclass
class NextContext:
    """Builds the next call's context in ``measure``'s (untimed) setup; the timed call takes it."""

    workspace: EngineWorkspace
    dry_run: bool = False
    _next: ExecutionContext | None = None

    def build(self) -> None:
        self._next = serve_context(self.workspace, dry_run=self.dry_run)

    def take(self) -> ExecutionContext:
        assert self._next is not None, "measure's setup builds a context before each call"
        context, self._next = self._next, None
        return context


def door_settings(home: Path, platform_url: str) -> Settings:
    """The engine store under ``home`` (SQLite manifest) whatever the platform database is."""
    return Settings(
        home=home,
        engine_manifest_url=f"sqlite:///{home / 'engine' / 'manifest.sqlite'}",
        platform_db_url=platform_url,
        engine_data_dir=home / "entries",
    )


@dataclass
class DoorRows:
    """Table 3's rows, each compared with the direct serve (a) and the door without a ledger (b)."""

    calls: int
    rows: list[tuple[str, ...]] = field(default_factory=list)
    direct: Timing | None = None
    door: Timing | None = None
    traffic: dict[str, str] = field(default_factory=dict)  # platform DB -> what one run_work sends

    def add(self, contender: str, platform_db: str, timing: Timing, *, over_door: bool = False) -> None:
        self.rows.append(
            (
                contender,
                platform_db,
                str(self.calls),
                f"{timing.median_ms:.2f}",
                f"{timing.p95_ms:.2f}",
                "1.00x (baseline)" if self.direct is None else ratio(timing.median_ms, self.direct.median_ms),
                f"{timing.median_ms - self.door.median_ms:+.2f}" if over_door and self.door else "—",
            )
        )


def door_traffic(platform_url: str, call: Callable[[], object], calls: int = 5) -> str:
    """What ``call`` sends, on average: SQL statements to the platform database and to the other
    databases (the engine manifest; BEGIN not counted), and new DBAPI connections opened."""
    platform = sa.engine.make_url(platform_url).database
    statements: Counter[str] = Counter()
    connections = 0

    def on_statement(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            where = "platform" if conn.engine.url.database == platform else "other"
            statements[where] += 1

    def on_connect(*_args: Any) -> None:
        nonlocal connections
        connections += 1

    sa.event.listen(Engine, "before_cursor_execute", on_statement)
    sa.event.listen(Engine, "connect", on_connect)
    try:
        for _ in range(calls):
            call()
    finally:
        sa.event.remove(Engine, "before_cursor_execute", on_statement)
        sa.event.remove(Engine, "connect", on_connect)
    return (
        f"{statements['platform'] / calls:.0f} SQL statements to the platform database, "
        f"{statements['other'] / calls:.0f} to the engine manifest, {connections / calls:.0f} new "
        "connections (BEGIN not counted)"
    )


def time_run_work(
    rows: DoorRows, workspace: EngineWorkspace, dialect: str, reference: pl.DataFrame, runs_before: int
) -> None:
    """(c) on ``workspace``'s platform database: real runs, dry runs, and opening the store alone."""
    url = workspace.settings.platform_url
    real = NextContext(workspace)
    timing, result = measure(lambda: run_work(workspace, real.take()), reps=rows.calls, setup=real.build)
    check_result(result, reference)
    rows.add("(c) `run_work`: the full ledger run", dialect, timing, over_door=True)
    recorded = ledger_runs(url)
    assert len(recorded) == runs_before + rows.calls + 1, "one ledger run per call (and the warm-up)"

    dry = NextContext(workspace, dry_run=True)
    timing, result = measure(lambda: run_work(workspace, dry.take()), reps=rows.calls, setup=dry.build)
    check_result(result, reference)
    assert result.suppressed == DRY_SUPPRESSED, result.suppressed
    assert ledger_runs(url) == recorded, "a dry run wrote to the ledger"
    rows.add("(c) `run_work`, dry run", dialect, timing, over_door=True)

    timing, _ = measure(lambda: RunEventStore.open(url).close(), reps=rows.calls)
    rows.add("part of (c): `RunEventStore.open` + `close` alone", dialect, timing)
    traffic = door_traffic(url, lambda: run_work(workspace, serve_context(workspace)))
    rows.traffic[dialect] = traffic
    check_one_step_runs(url, len(recorded) + 5)


def test_execution_door_overhead(ledger_bench: LedgerBench, request: pytest.FixtureRequest) -> None:
    """One exact memo hit served directly, through ``execute`` and through ``run_work``."""
    source = ledger_bench.workdir / "door_source"
    write_parquet(generate(DOOR_SAMPLE), source)
    ac = load_ac(RETAIL_AC, source_path=source)
    home = ledger_bench.workdir / "door_home"
    workspace = EngineWorkspace(ac, door_settings(home, f"sqlite:///{home / 'platform.sqlite'}"), today=TODAY)
    first = run_work(workspace, serve_context(workspace))  # memoizes the family at its base grain
    assert first.outcome is not None and first.outcome.summary["path"] == PathKind.BACKEND.value
    window = DateWindow(*WEEK)
    rows = DoorRows(DOOR_CALLS)

    with MetricEngine.open(ac, workspace.settings, today=lambda: TODAY) as engine:
        backend = backend_for(ac)
        try:

            def direct() -> tuple[Served, pl.DataFrame]:
                served = engine.serve_metric(FAMILY, BASE_GRAIN, backend=backend, window=window)
                return served, served.frame.collect()

            timing, (served, reference) = measure(direct, reps=DOOR_CALLS)
        finally:
            backend.close()
    check_served(served, reference)
    assert reference.height > 0
    rows.add("(a) `MetricEngine.serve_metric` on an open engine and backend", "—", timing)
    rows.direct = timing

    def in_session() -> Served:
        with workspace.session() as (engine, backend):
            assert backend is not None
            served = engine.serve_metric(FAMILY, BASE_GRAIN, backend=backend, window=window)
            return dataclasses.replace(served, frame=served.frame.collect().lazy())

    timing, served = measure(in_session, reps=DOOR_CALLS)
    check_served(served, reference)
    rows.add("part of (b): `EngineWorkspace.session()` + serve (opens both per call)", "—", timing)

    timing, _ = measure(
        lambda: (MANIFEST_MIGRATIONS.head_revision(), PLATFORM_MIGRATIONS.head_revision()), reps=DOOR_CALLS
    )
    rows.add("part of (b) and (c): `Migrations.head_revision()`, manifest + platform DB", "—", timing)

    timing, _ = measure(lambda: serve_context(workspace), reps=DOOR_CALLS)
    rows.add("`batch_context` alone (built untimed before (b) and (c))", "—", timing)

    door = MetricExecutionEngine(engine_works(workspace), recorder=None)
    contexts = NextContext(workspace)
    timing, result = measure(lambda: door.execute(contexts.take()), reps=DOOR_CALLS, setup=contexts.build)
    check_result(result, reference)
    rows.add("(b) `MetricExecutionEngine.execute`, recorder=None", "—", timing)
    rows.door = timing

    time_run_work(rows, workspace, "SQLite", reference, runs_before=1)
    if os.environ.get(PG_URL_ENV):
        with fresh_pg_schema(str(request.getfixturevalue("pg_url"))) as url:
            open_platform_db(url).dispose()
            pg_workspace = EngineWorkspace(ac, door_settings(home, url), today=TODAY)
            time_run_work(rows, pg_workspace, "PostgreSQL", reference, runs_before=0)

    ledger_bench.report.publish(
        "3. The execution door: one exact memo hit, directly and through the door",
        ("path", "platform DB", "calls", "median ms", "p95 ms", "vs (a)", "ms over (b)"),
        rows.rows,
        (
            f"`{FAMILY}` at its base grain {list(BASE_GRAIN)} over {WEEK[0]}..{WEEK[1]} (today "
            f"{TODAY}), sample of {DOOR_SAMPLE.rows:,} transactions; every call an exact memo hit "
            f"(checked), its frame equal to (a)'s; median of {DOOR_CALLS} calls after 1 warm-up",
            "the engine manifest is a SQLite file in every row; only the platform database (the "
            "ledger) changes between the SQLite and PostgreSQL rows",
            "(b) and (c) open the engine and the backend on every call (what every work does); "
            "(c) also opens the platform database (`RunEventStore.open`: engine, migration check, "
            "dispose) and records RunStarted, StepStarted, StepCompleted, RunCompleted, checked "
            "at runSeq 1..4 and projected COMPLETED afterwards",
            f"dry run: nothing written (the ledger unchanged; suppressed writes {DRY_SUPPRESSED})",
            "`head_revision()` is what every open's migration check computes first (the manifest's "
            "in (b), both in (c)); it reads the Alembic scripts from disk each time",
            *(f"one `run_work` on a {db} platform DB sends {t}" for db, t in rows.traffic.items()),
        ),
    )
