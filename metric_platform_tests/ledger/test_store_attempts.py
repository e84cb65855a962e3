"""Logical attempts allocated by the ledger (seed 004 §1.3: "assigned by Engine, monotonic per stepId
per runId"), on a SQLite file and on PostgreSQL: the root run is attempt 1 whenever it is first
seen, every other engine run of the ledger run gets the next number once and keeps it, concurrent
callers agree, a dry run writes nothing.

The Dagster-level cases (runs deleted from Dagster's storage, tagged and untagged re-executions,
RetryPolicy retries) are in metric_platform_tests/defs/test_ledger_identity.py and
test_ledger_sensors.py, on real Dagster runs.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from metric_platform import write_guard
from metric_platform.db import write_transaction
from metric_platform.errors import StorageError
from metric_platform.ledger.schema import run_attempts, runs
from metric_platform.ledger.store import ATTEMPT_WRITE_KIND, AppendOutcome, RunEventStore
from metric_platform_tests.ledger._store_support import step_event

NOW = dt.datetime(2026, 3, 14, 9, 30, tzinfo=dt.UTC)


def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"  # PostgreSQL schemas are per test; unique anyway


def run_row(store: RunEventStore, run_id: str) -> tuple[dt.date, int] | None:
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(runs.c.run_epoch, runs.c.last_seq).where(runs.c.run_id == run_id)
        ).first()
    return None if row is None else (row.run_epoch, int(row.last_seq))


def attempt_rows(store: RunEventStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(run_attempts)).scalar_one())


def test_the_root_run_is_attempt_one_and_reexecutions_count_up_from_two(ledger_store: RunEventStore) -> None:
    run_id = new_run()

    # A re-execution seen before its root (a sensor that fired late) does not take number 1.
    assert ledger_store.attempt_for(run_id, "reexec-a") == 2
    assert ledger_store.attempt_for(run_id, run_id) == 1
    assert ledger_store.attempt_for(run_id, "reexec-b") == 3
    assert ledger_store.attempt_for(run_id, "reexec-c") == 4

    # Asked again (another step of the run, a platform retry, a sensor firing twice): unchanged.
    assert [ledger_store.attempt_for(run_id, ref) for ref in ("reexec-c", run_id, "reexec-a")] == [4, 1, 2]
    assert ledger_store.attempts(run_id) == {run_id: 1, "reexec-a": 2, "reexec-b": 3, "reexec-c": 4}
    assert list(ledger_store.attempts(run_id).values()) == [1, 2, 3, 4], "in attempt order"


def test_each_ledger_run_numbers_its_own_attempts(ledger_store: RunEventStore) -> None:
    first, second = new_run(), new_run()

    assert ledger_store.attempt_for(first, "x") == 2
    assert ledger_store.attempt_for(second, "x") == 2, "the same engine run id in another ledger run"
    assert ledger_store.attempt_for(second, second) == 1
    assert ledger_store.attempt_for(first, "y") == 3

    assert ledger_store.attempts(first) == {"x": 2, "y": 3}
    assert ledger_store.attempts(second) == {second: 1, "x": 2}
    assert ledger_store.attempts(new_run()) == {}


def test_allocating_creates_the_run_as_an_append_would_and_leaves_its_run_seq_alone(
    platform_url: str,
) -> None:
    with RunEventStore.open(platform_url, clock=lambda: NOW) as store:
        run_id = new_run()
        assert store.attempt_for(run_id, run_id) == 1
        assert run_row(store, run_id) == (dt.date(2026, 3, 1), 0), "run_epoch from the clock, no runSeq taken"

        appended = [store.append(step_event(run_id, f"s{i}")) for i in range(3)]
        assert [r.event.run_seq for r in appended if r.event is not None] == [1, 2, 3]

        assert store.attempt_for(run_id, "reexec") == 2
        assert run_row(store, run_id) == (dt.date(2026, 3, 1), 3)
        after = store.append(step_event(run_id, "s3", logical=2))
        assert after.outcome is AppendOutcome.APPENDED and after.event is not None
        assert after.event.run_seq == 4

        # A run that exists already (appended to first) keeps its epoch when it is allocated in.
        other = new_run()
        store.append(step_event(other, "s"))
        assert store.attempt_for(other, "reexec") == 2
        assert run_row(store, other) == (dt.date(2026, 3, 1), 1)


def test_a_dry_run_answers_with_the_number_without_writing(ledger_store: RunEventStore) -> None:
    run_id = new_run()
    ledger_store.attempt_for(run_id, run_id)
    ledger_store.attempt_for(run_id, "reexec-a")

    with write_guard.dry_run() as suppressed:
        assert ledger_store.attempt_for(run_id, "reexec-a") == 2, "already allocated: its number"
        assert ledger_store.attempt_for(run_id, "reexec-b") == 3, "the number it would get"
        assert ledger_store.attempt_for(run_id, "reexec-b") == 3
        unseen = new_run()
        assert ledger_store.attempt_for(unseen, unseen) == 1
        assert ledger_store.attempt_for(unseen, "reexec") == 2

    assert suppressed is not None and suppressed.counts == {ATTEMPT_WRITE_KIND: 4}
    assert ledger_store.attempts(run_id) == {run_id: 1, "reexec-a": 2}
    assert ledger_store.attempts(unseen) == {} and run_row(ledger_store, unseen) is None
    assert attempt_rows(ledger_store) == 2


def test_an_allocation_waiting_longer_than_its_budget_for_the_run_is_a_storage_error(
    ledger_store: RunEventStore,
) -> None:
    run_id = new_run()
    ledger_store.attempt_for(run_id, run_id)
    with write_transaction(ledger_store.engine) as conn:
        # An append in flight holds the run's row (and, on SQLite, the write lock) until commit.
        ledger_store.append_in(conn, step_event(run_id, "s"))
        assert ledger_store.attempt_for(run_id, run_id) == 1, "an existing number needs no lock"
        with pytest.raises(StorageError):
            ledger_store.attempt_for(run_id, "reexec", timeout_ms=200)
    assert ledger_store.attempt_for(run_id, "reexec", timeout_ms=200) == 2


def run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert errors == []


def test_concurrent_callers_agree_and_distinct_engine_runs_get_distinct_numbers(
    ledger_store: RunEventStore,
) -> None:
    for _ in range(4):
        concurrent_round(ledger_store)


def concurrent_round(store: RunEventStore) -> None:
    """12 threads at once on a fresh ledger run: 4 ask for one shared re-execution, 4 for a
    re-execution each, 2 for the root, 2 append 3 events each to the run meanwhile."""
    run_id = new_run()
    refs = ["shared"] * 4 + [f"own-{i}" for i in range(4)] + [run_id] * 2
    threads = len(refs) + 2
    got: dict[int, int] = {}
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        barrier.wait()
        if i < len(refs):
            got[i] = store.attempt_for(run_id, refs[i])
        else:
            for n in range(3):
                store.append(step_event(run_id, f"appender-{i}-{n}"))

    run_threads(threads, work)

    by_ref: dict[str, set[int]] = {}
    for i, number in got.items():
        by_ref.setdefault(refs[i], set()).add(number)
    assert all(len(numbers) == 1 for numbers in by_ref.values()), by_ref
    numbers = {ref: min(n) for ref, n in by_ref.items()}
    assert numbers[run_id] == 1
    assert sorted(numbers.values()) == [1, 2, 3, 4, 5, 6], "distinct, gapless from 2"
    assert store.attempts(run_id) == dict(sorted(numbers.items(), key=lambda kv: kv[1]))
    assert [e.run_seq for e in store.events(run_id)] == list(range(1, 7)), "appends stay gapless"
    row = run_row(store, run_id)
    assert row is not None and row[1] == 6, "no runSeq taken by an allocation"
