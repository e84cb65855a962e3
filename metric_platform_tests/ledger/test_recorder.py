"""The write-latency budget (seed 004 §5): StepStarted fails open to the spool, outcomes fail the step."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from metric_platform import write_guard
from metric_platform.db import create_db_engine, write_transaction
from metric_platform.errors import InternalError, InvalidRequestError
from metric_platform.ledger.errors import LedgerConflictError
from metric_platform.ledger.events import RUN_STEP, EventIdentity, EventType, NewEvent
from metric_platform.ledger.recorder import LedgerRecorder, LedgerWriteError, RecordOutcome
from metric_platform.ledger.schema import runs
from metric_platform.ledger.spool import ReplayReport, Spool
from metric_platform.ledger.store import RunEventStore

BUDGET_MS = 300
# The budget plus slack for a loaded CI machine: what "bounded by the budget" means here.
BOUNDED_S = BUDGET_MS / 1000 + 2.0
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/nowhere"


def step_event(
    event_type: EventType, run_id: str = "run-1", step_id: str = "step-a", **data: object
) -> NewEvent:
    return NewEvent(
        identity=EventIdentity(run_id=run_id, step_id=step_id, plan_version="p1"),
        event_type=event_type,
        data=dict(data),
    )


@contextmanager
def ledger_locked(store: RunEventStore, run_id: str) -> Iterator[None]:
    """Another writer holds what an append to ``run_id`` needs: SQLite's write lock (BEGIN
    IMMEDIATE), or on PostgreSQL the run's row lock."""
    engine = store.engine
    if engine.dialect.name == "sqlite":
        raw = sqlite3.connect(make_url(engine.url).database or "", isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        return
    with write_transaction(engine) as conn:
        conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == run_id).with_for_update()).one()
        yield


def _timed_record(recorder: LedgerRecorder, event: NewEvent) -> tuple[RecordOutcome, float]:
    started = time.monotonic()
    outcome = recorder.record(event)
    return outcome, time.monotonic() - started


def test_a_locked_ledger_spools_step_started_and_fails_step_completed(
    tmp_path: Path, ledger_store: RunEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = LedgerRecorder(ledger_store, Spool(tmp_path / "spool"), budget_ms=BUDGET_MS)
    assert recorder.record_run_status("run-1", EventType.RUN_STARTED) == RecordOutcome.APPENDED
    started = step_event(EventType.STEP_STARTED)
    completed = step_event(EventType.STEP_COMPLETED, rows=42)

    with ledger_locked(ledger_store, "run-1"):
        with caplog.at_level(logging.WARNING, logger="metric_platform.ledger.recorder"):
            outcome, elapsed = _timed_record(recorder, started)
        assert outcome == RecordOutcome.SPOOLED and elapsed < BOUNDED_S
        assert "spooled to" in caplog.text and "StepStarted of run 'run-1' step 'step-a'" in caplog.text
        began = time.monotonic()
        with pytest.raises(LedgerWriteError) as caught:
            recorder.record(completed)
        assert time.monotonic() - began < BOUNDED_S
        assert "StepCompleted of run 'run-1' step 'step-a'" in str(caught.value)
        assert "the step fails because its outcome could not be recorded" in str(caught.value)
        assert f"{BUDGET_MS} ms write budget" in str(caught.value)
        with pytest.raises(LedgerWriteError, match="it was not recorded and must be retried"):
            recorder.record_run_status("run-1", EventType.RUN_FAILED)
    assert [p.stem for p in recorder.spool.pending()] == [started.idempotency_key]

    # The ledger is back: the retried step records its outcome, then the replay adds StepStarted
    # late (after StepCompleted, which the projector tolerates), and a second replay does nothing.
    assert recorder.record(completed) == RecordOutcome.APPENDED
    assert recorder.replay_spool() == ReplayReport(replayed=1)
    events = ledger_store.events("run-1")
    assert [e.event_type for e in events] == [
        EventType.RUN_STARTED,
        EventType.STEP_COMPLETED,
        EventType.STEP_STARTED,
    ]
    assert [e.run_seq for e in events] == [1, 2, 3]
    assert recorder.replay_spool() == ReplayReport()
    assert len(ledger_store.events("run-1")) == 3


def test_an_unreachable_postgres_spools_and_the_recovered_ledger_takes_the_replay(
    tmp_path: Path, platform_url: str
) -> None:
    if not platform_url.startswith("postgresql"):
        pytest.skip("the unreachable-server case is PostgreSQL's; SQLite's is the locked file above")
    spool = Spool(tmp_path / "spool")
    down = RunEventStore(create_db_engine(UNREACHABLE_PG))
    recorder = LedgerRecorder(down, spool, budget_ms=BUDGET_MS)
    started = step_event(EventType.STEP_STARTED)
    outcome, elapsed = _timed_record(recorder, started)
    assert outcome == RecordOutcome.SPOOLED and elapsed < BOUNDED_S
    # Spooling the same event again (a retried step while still down) keeps one file.
    assert recorder.record(started) == RecordOutcome.SPOOLED
    for critical in (EventType.STEP_COMPLETED, EventType.STEP_FAILED):
        with pytest.raises(LedgerWriteError, match=r"127\.0\.0\.1:1") as caught:
            recorder.record(step_event(critical))
        assert isinstance(caught.value, InternalError)
    down.engine.dispose()

    with RunEventStore.open(platform_url) as store:
        recovered = LedgerRecorder(store, spool, budget_ms=BUDGET_MS)
        assert recovered.replay_spool() == ReplayReport(replayed=1)
        assert store.get("run-1", started.idempotency_key) is not None
        assert recovered.replay_spool() == ReplayReport()
        assert recovered.record(started) == RecordOutcome.DUPLICATE


def test_a_dry_run_records_nothing_and_spools_nothing(tmp_path: Path, ledger_store: RunEventStore) -> None:
    spool = Spool(tmp_path / "spool")
    healthy = LedgerRecorder(ledger_store, spool, budget_ms=BUDGET_MS)
    down = LedgerRecorder(RunEventStore(create_db_engine(UNREACHABLE_PG)), spool, budget_ms=BUDGET_MS)
    with write_guard.dry_run() as suppressed:
        for recorder in (healthy, down):
            assert recorder.record(step_event(EventType.STEP_STARTED)) == RecordOutcome.SUPPRESSED
            assert recorder.record(step_event(EventType.STEP_COMPLETED)) == RecordOutcome.SUPPRESSED
        assert healthy.record_run_status("run-1", EventType.RUN_STARTED) == RecordOutcome.SUPPRESSED
        assert healthy.replay_spool() == ReplayReport()
    assert suppressed is not None and suppressed.counts["ledger.append"] == 5
    assert not spool.directory.exists()
    assert ledger_store.run_ids() == []


def test_a_sensor_firing_twice_records_a_run_status_once(ledger_store: RunEventStore, tmp_path: Path) -> None:
    recorder = LedgerRecorder(ledger_store, Spool(tmp_path / "spool"))
    ref = {"dagsterRunId": "d-1"}
    first = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert recorder.record_run_status(
        "run-1", EventType.RUN_STARTED, engine_run_ref=ref, emitted_at=first
    ) == (RecordOutcome.APPENDED)
    later = first + dt.timedelta(minutes=1)
    assert recorder.record_run_status(
        "run-1", EventType.RUN_STARTED, engine_run_ref=ref, emitted_at=later
    ) == (RecordOutcome.DUPLICATE)
    failure = {"error": "step-a failed"}
    assert recorder.record_run_status("run-1", EventType.RUN_FAILED, data=failure) == RecordOutcome.APPENDED
    assert recorder.record_run_status("run-1", EventType.RUN_FAILED, data=failure) == RecordOutcome.DUPLICATE
    events = ledger_store.events("run-1")
    assert [(e.event_type, e.event.identity.step_id) for e in events] == [
        (EventType.RUN_STARTED, RUN_STEP),
        (EventType.RUN_FAILED, RUN_STEP),
    ]
    assert events[0].event.engine_run_ref == ref and events[0].event.emitted_at == first
    with pytest.raises(InvalidRequestError, match="not StepStarted"):
        recorder.record_run_status("run-1", EventType.STEP_STARTED)
    with pytest.raises(InvalidRequestError, match="not RunPaused"):
        recorder.record_run_status("run-1", EventType.RUN_PAUSED)


def test_a_slow_append_that_committed_is_recorded_with_a_warning(
    tmp_path: Path, ledger_store: RunEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = itertools.count(0.0, 5.0)  # every clock reading is 5 s after the previous one
    recorder = LedgerRecorder(
        ledger_store, Spool(tmp_path / "spool"), budget_ms=BUDGET_MS, clock=lambda: next(ticks)
    )
    with caplog.at_level(logging.WARNING, logger="metric_platform.ledger.recorder"):
        assert recorder.record(step_event(EventType.STEP_COMPLETED)) == RecordOutcome.APPENDED
    assert "took 5000 ms, over the 300 ms budget (recorded all the same)" in caplog.text
    assert recorder.spool.pending() == []


def test_when_the_spool_fails_too_even_step_started_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "spool"
    blocker.write_text("not a directory")
    store = RunEventStore(create_db_engine(UNREACHABLE_PG))
    recorder = LedgerRecorder(store, Spool(blocker), budget_ms=BUDGET_MS)
    with pytest.raises(LedgerWriteError, match=r"the ledger failed \(.*\) and so did the local spool"):
        recorder.record(step_event(EventType.STEP_STARTED))
    store.engine.dispose()


def test_a_conflict_is_raised_not_spooled(tmp_path: Path, ledger_store: RunEventStore) -> None:
    recorder = LedgerRecorder(ledger_store, Spool(tmp_path / "spool"))
    recorder.record(step_event(EventType.STEP_STARTED, attempt_note="first"))
    with pytest.raises(LedgerConflictError):
        recorder.record(step_event(EventType.STEP_STARTED, attempt_note="second"))
    assert recorder.spool.pending() == []


def test_the_budget_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="must be positive, not 0 ms"):
        LedgerRecorder(RunEventStore(create_db_engine("sqlite://")), Spool(tmp_path), budget_ms=0)
