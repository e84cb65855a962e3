"""Concurrent appends: many writer processes over shared runs lose and duplicate nothing, and one
idempotency key appended 32 times at once is recorded once (SQLite file and PostgreSQL)."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time

import pytest
import sqlalchemy as sa

from metric_platform.db import create_db_engine
from metric_platform.ledger.errors import LedgerConflictError
from metric_platform.ledger.events import EventIdentity, EventType, NewEvent
from metric_platform.ledger.schema import outbox, run_events, runs
from metric_platform.ledger.store import AppendOutcome, AppendResult, RunEventStore
from metric_platform_tests.ledger._store_support import WriterJob, append_worker, run_spawned, step_event

log = logging.getLogger(__name__)

RUNS = 20


def _check_ledger(url: str, *, expected_events: int) -> None:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            total, keys, positions, ids = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count(sa.distinct(run_events.c.idempotency_key)),
                    sa.func.count(sa.distinct(run_events.c.position)),
                    sa.func.count(sa.distinct(run_events.c.event_id)),
                )
            ).one()
            per_run = conn.execute(
                sa.select(
                    run_events.c.run_id,
                    sa.func.count(),
                    sa.func.max(run_events.c.run_seq),
                    sa.func.count(sa.distinct(run_events.c.run_seq)),
                    sa.func.min(run_events.c.run_seq),
                ).group_by(run_events.c.run_id)
            ).all()
            last_seqs = {
                r.run_id: r.last_seq for r in conn.execute(sa.select(runs.c.run_id, runs.c.last_seq))
            }
            announced = conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()
    finally:
        engine.dispose()
    assert total == expected_events, (
        f"{expected_events - total} events lost (or {total - expected_events} extra)"
    )
    assert keys == positions == ids == total, "a key, position or event id was recorded twice"
    assert len(per_run) == RUNS
    for run_id, count, max_seq, distinct_seqs, min_seq in per_run:
        assert count == max_seq == distinct_seqs == last_seqs[run_id], run_id
        assert min_seq == 1
    assert announced == total, "every appended event is announced exactly once"


def _writers_run(url: str, writers: int, per_writer: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(writers)
    results = ctx.Queue()
    jobs = [WriterJob(url, writer, per_writer, RUNS) for writer in range(writers)]
    codes = run_spawned(append_worker, [(job, barrier, results) for job in jobs])
    assert codes == [0] * writers, f"writer exit codes {codes}"
    reports = [results.get(timeout=10) for _ in range(writers)]
    assert sum(shared for _, shared, _ in reports) == RUNS, (
        "each shared event is APPENDED by exactly one writer"
    )
    _check_ledger(url, expected_events=writers * per_writer + RUNS)
    return float(max(seconds for _, _, seconds in reports))


def test_sixteen_writer_processes_appending_to_shared_runs_lose_and_duplicate_nothing(
    platform_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each writer appends its own events round-robin over 20 runs, re-appends every 50th one
    (a DUPLICATE with the original runSeq) and races every other writer on 20 shared events."""
    writers, per_writer = 16, 1000
    seconds = _writers_run(platform_url, writers, per_writer)
    dialect = sa.engine.make_url(platform_url).get_backend_name()
    rate = (writers * per_writer) / seconds
    with capsys.disabled():
        print(
            f"\n[ledger] {dialect}: {writers} writers x {per_writer} events in {seconds:.1f} s ({rate:.0f}/s)"
        )


def _append_all(url: str, events: list[NewEvent]) -> list[AppendResult]:
    """Append each event from its own thread and connection, all released at once."""
    barrier = threading.Barrier(len(events))
    results: list[AppendResult | BaseException | None] = [None] * len(events)
    engines = [create_db_engine(url) for _ in events]

    def go(i: int) -> None:
        store = RunEventStore(engines[i])
        barrier.wait()
        try:
            results[i] = store.append(events[i])
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(events))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for engine in engines:
            engine.dispose()
    failures = [r for r in results if not isinstance(r, AppendResult)]
    assert failures == [], failures[:3]
    return [r for r in results if isinstance(r, AppendResult)]


def test_thirty_two_concurrent_appends_of_one_key_record_one_event(platform_url: str) -> None:
    # Platform retries of one logical attempt: engine attempts differ, the key does not.
    events = [
        NewEvent(EventIdentity("run-k", "step", 1, attempt, "plan-1"), EventType.STEP_COMPLETED, {"rows": 5})
        for attempt in range(32)
    ]
    started = time.perf_counter()
    results = _append_all(platform_url, events)
    log.info("32 same-key appends in %.2f s", time.perf_counter() - started)

    assert [r.outcome for r in results].count(AppendOutcome.APPENDED) == 1
    seen = [r.event for r in results if r.event is not None]
    assert len(seen) == 32
    stored = {(e.run_seq, e.event_id, e.position) for e in seen}
    assert len(stored) == 1
    (winner,) = [r.event for r in results if r.outcome is AppendOutcome.APPENDED and r.event is not None]
    assert {e.event.identity.engine_attempt_id for e in seen} == {winner.event.identity.engine_attempt_id}, (
        "every caller sees the original's attempt id"
    )

    with RunEventStore.open(platform_url) as store:
        assert [e.run_seq for e in store.events("run-k")] == [1]
        with pytest.raises(LedgerConflictError):
            store.append(
                NewEvent(
                    EventIdentity("run-k", "step", 1, 0, "plan-1"), EventType.STEP_COMPLETED, {"rows": 6}
                )
            )
        retry = store.append(
            NewEvent(EventIdentity("run-k", "step", 1, 99, "plan-1"), EventType.STEP_COMPLETED, {"rows": 5})
        )
        assert retry.outcome is AppendOutcome.DUPLICATE and retry.event is not None
        assert (retry.event.run_seq, retry.event.event_id) == next(iter(stored))[:2]
        after = store.append(step_event("run-k", "next"))
        assert after.event is not None and after.event.run_seq == 2
