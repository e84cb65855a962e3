"""A step whose outcome the ledger already holds is not run again (AC-4 through deterministic keys).

Against the real ledger (RunEventStore + LedgerRecorder on a SQLite platform database): executing
one context twice runs the work once; the second result is the recorded outcome; a StepFailed
recorded by a first attempt does not stop a platform retry from running and completing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from metric_platform.execution.engine import MetricExecutionEngine
from metric_platform.execution.results import ExecutionStatus
from metric_platform.ledger.events import EventType
from metric_platform.ledger.recorder import LedgerRecorder
from metric_platform.ledger.spool import Spool
from metric_platform.ledger.store import RunEventStore
from metric_platform_tests.execution.conftest import EchoWork, make_context


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[tuple[RunEventStore, LedgerRecorder]]:
    store = RunEventStore.open(f"sqlite:///{tmp_path / 'platform.sqlite'}")
    try:
        yield store, LedgerRecorder(store, Spool(tmp_path / "spool"))
    finally:
        store.close()


def test_a_completed_step_is_answered_from_the_ledger_not_run_again(
    ledger: tuple[RunEventStore, LedgerRecorder], work: EchoWork
) -> None:
    store, recorder = ledger
    engine = MetricExecutionEngine([work], recorder=recorder)
    context = make_context()

    first = engine.execute(context)
    again = engine.execute(context)

    assert len(work.runs) == 1
    assert first.replayed_from_seq is None and first.outcome is not None
    assert again.status is ExecutionStatus.COMPLETED and again.outcome is not None
    completed = [e for e in store.events("run-1") if e.event_type is EventType.STEP_COMPLETED]
    assert again.replayed_from_seq == completed[0].run_seq
    assert again.outcome.artifacts == first.outcome.artifacts
    assert again.outcome.summary == first.outcome.summary
    assert again.outcome.value is None  # values are never recorded (seed 004 §2)
    assert [e.event_type for e in store.events("run-1")] == [EventType.STEP_STARTED, EventType.STEP_COMPLETED]


def test_a_dry_run_of_a_completed_step_still_computes(
    ledger: tuple[RunEventStore, LedgerRecorder], work: EchoWork
) -> None:
    _, recorder = ledger
    engine = MetricExecutionEngine([work], recorder=recorder)
    engine.execute(make_context())

    dry = engine.execute(make_context(dry_run=True))

    assert len(work.runs) == 2 and dry.replayed_from_seq is None
    assert dry.outcome is not None and dry.outcome.value == [0, 1, 2]


def test_a_platform_retry_after_a_recorded_failure_runs_and_records_its_outcome(
    ledger: tuple[RunEventStore, LedgerRecorder], work: EchoWork
) -> None:
    store, recorder = ledger
    engine = MetricExecutionEngine([work], recorder=recorder)
    work.fail_with.append(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        engine.execute(make_context())
    # A second failure with another error is the same failure of this logical attempt: no conflict.
    work.fail_with.append(ValueError("something else"))
    retry = {"run_id": "run-1", "step_id": "test.echo[2026-03-01]", "engine_attempt_id": 1}
    with pytest.raises(ValueError, match="something else"):
        engine.execute(make_context(identity=retry))

    done = engine.execute(make_context(identity={**retry, "engine_attempt_id": 2}))

    assert done.replayed_from_seq is None and len(work.runs) == 3
    types = [e.event_type for e in store.events("run-1")]
    assert types == [EventType.STEP_STARTED, EventType.STEP_FAILED, EventType.STEP_COMPLETED]
    (failed,) = [e for e in store.events("run-1") if e.event_type is EventType.STEP_FAILED]
    assert failed.event.data["error"]["code"] == "OSError"  # the first failure stays the record
