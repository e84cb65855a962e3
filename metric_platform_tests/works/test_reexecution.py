"""Re-executing one context through ``run_work`` (seed 000 AC-4, seed 004 §1.3) leaves the ledger
and the engine store as one execution leaves them (but for access stamps and counts, which a read
updates by design).

- When the ledger holds the step's StepCompleted, the second execution replays that record: the
  work does not run, and only the Run* events are appended again, as duplicates.
- When the ledger cannot say (the look-up failed), the work runs again and reports differently (a
  serve is an exact memo hit, a refresh finds nothing stale). ``summary`` is descriptive
  (``ledger.events.semantic_payload``), so every event of the second execution is a DUPLICATE
  with the first one's runSeq, never a conflict.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.errors import StorageError
from metric_platform.execution.results import ExecutionResult
from metric_platform.execution.work import WorkOutcome
from metric_platform.ledger.events import EventType, NewEvent, StoredEvent
from metric_platform.ledger.recorder import LedgerRecorder, RecordOutcome
from metric_platform.ledger.store import RunEventStore
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.works.runner import batch_context, run_work
from metric_platform_tests.works.conftest import (
    LAST_WEEK,
    LATER,
    PROVISIONAL_SERVE,
    SERVE,
    WEEK,
    Stores,
)
from metric_platform_tests.works.state import State, files_under, ledger_events, state

APPENDED, DUPLICATE = RecordOutcome.APPENDED, RecordOutcome.DUPLICATE


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, RecordOutcome]]]:
    """(event type, outcome) of every event the runner records, in order."""
    seen: list[tuple[str, RecordOutcome]] = []
    original = LedgerRecorder.record

    def record(self: LedgerRecorder, event: NewEvent) -> RecordOutcome:
        outcome = original(self, event)
        seen.append((str(event.event_type), outcome))
        return outcome

    monkeypatch.setattr(LedgerRecorder, "record", record)
    yield seen


@dataclass(frozen=True)
class Reexecution:
    """A work executed twice, and the summary entry that differs between its two reports."""

    work: str
    params: Mapping[str, Any]
    days: tuple[dt.date, dt.date] | None
    today: dt.date | None
    differs: tuple[str, object, object]  # key, first value, second value


REEXECUTIONS = [
    pytest.param(
        Reexecution("engine.serve", SERVE, WEEK, None, ("path", "backend", "exact")), id="serve-memo-hit"
    ),
    pytest.param(Reexecution("engine.refresh", {}, None, LATER, ("recomputed", 2, 0)), id="refresh"),
]


@dataclass
class Sources:
    """Counts the backends the works open (a replayed step opens none)."""

    opened: int = 0

    def open(self, ac: AnalyticalContext) -> DataAPIBackend:
        self.opened += 1
        return backend_for(ac)


@dataclass(frozen=True)
class Twice:
    """One context executed twice, and what the stores held after the first execution."""

    first: ExecutionResult
    second: ExecutionResult
    events: list[StoredEvent]
    state: State
    entry_files: dict[str, tuple[int, int]]
    sources: Sources

    def outcomes(self) -> tuple[WorkOutcome, WorkOutcome]:
        assert self.first.outcome is not None and self.second.outcome is not None
        return self.first.outcome, self.second.outcome


def _twice(
    case: Reexecution, stores: Stores, ac: AnalyticalContext, outcomes: list[tuple[str, RecordOutcome]]
) -> Twice:
    """Execute the case's context twice, recording the outcomes of the second execution's events."""
    # Provisional days, stale on LATER: what the refresh recomputes.
    assert stores.run(ac, "engine.serve", PROVISIONAL_SERVE, days=LAST_WEEK).ok
    sources = Sources()
    workspace = stores.workspace(ac, today=case.today, open_backend=sources.open)
    context = batch_context(workspace, case.work, case.params, days=case.days)
    outcomes.clear()
    first = run_work(workspace, context)
    events = ledger_events(stores.settings, context.identity.run_id)
    after_one = state(stores.settings, without_access=True, with_files=False)
    entry_files = files_under(stores.settings.data_dir)
    second = run_work(workspace, context)
    return Twice(first, second, events, after_one, entry_files, sources)


@pytest.mark.parametrize("case", REEXECUTIONS)
def test_a_completed_step_executed_again_replays_its_record_and_changes_nothing(
    case: Reexecution, stores: Stores, ac: AnalyticalContext, outcomes: list[tuple[str, RecordOutcome]]
) -> None:
    twice = _twice(case, stores, ac, outcomes)

    assert twice.first.ok and twice.second.ok
    assert twice.sources.opened == 1, "the work ran once: the second execution read the ledger's record"
    assert (twice.first.replayed_from_seq, twice.second.replayed_from_seq) == (None, 3)
    assert outcomes == [
        *[(t, APPENDED) for t in ("RunStarted", "StepStarted", "StepCompleted", "RunCompleted")],
        ("RunStarted", DUPLICATE),
        ("RunCompleted", DUPLICATE),
    ]
    first, second = twice.outcomes()
    assert (second.summary, second.artifacts) == (first.summary, first.artifacts)
    assert second.value is None, "a value is never recorded (seed 004 §2)"
    assert ledger_events(stores.settings, twice.first.context.identity.run_id) == twice.events
    assert state(stores.settings, without_access=True, with_files=False) == twice.state
    assert files_under(stores.settings.data_dir) == twice.entry_files


@pytest.mark.parametrize("case", REEXECUTIONS)
def test_a_step_run_again_with_another_report_leaves_one_execution_in_the_ledger(
    case: Reexecution,
    stores: Stores,
    ac: AnalyticalContext,
    outcomes: list[tuple[str, RecordOutcome]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unreadable(self: RunEventStore, run_id: str, idempotency_key: str) -> StoredEvent | None:
        msg = "the ledger could not be read just now"
        raise StorageError(msg)

    # The look-up of a prior StepCompleted fails: the recorder answers "unknown", the step runs.
    monkeypatch.setattr(RunEventStore, "get", unreadable)

    twice = _twice(case, stores, ac, outcomes)

    assert twice.first.ok and twice.second.ok and twice.second.replayed_from_seq is None
    assert twice.sources.opened == 2, "the work ran again"
    assert [o for _, o in outcomes] == [APPENDED] * 4 + [DUPLICATE] * 4
    assert [e.run_seq for e in twice.events] == [1, 2, 3, 4]
    run_id = twice.first.context.identity.run_id
    assert ledger_events(stores.settings, run_id) == twice.events, "same runSeq, ids, times"
    assert state(stores.settings, without_access=True, with_files=False) == twice.state
    assert files_under(stores.settings.data_dir) == twice.entry_files
    first, second = twice.outcomes()
    key, was, now = case.differs
    assert (first.summary[key], second.summary[key]) == (was, now)
    assert first.artifacts == second.artifacts
    (completed,) = [e for e in twice.events if e.event_type is EventType.STEP_COMPLETED]
    assert completed.event.data["summary"][key] == was, "the ledger keeps the first report"
