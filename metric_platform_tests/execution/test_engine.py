"""``MetricExecutionEngine.execute``: validation first, then events around the work (seed 000 §5)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from metric_platform import write_guard
from metric_platform.errors import InternalError, StorageError, UserError
from metric_platform.execution import (
    ExecutionContext,
    ExecutionResult,
    ExecutionStatus,
    InvalidContextError,
    MetricExecutionEngine,
    StepError,
)
from metric_platform.execution.results import MAX_ERROR_MESSAGE, is_retryable
from metric_platform.execution.work import PreparedWork, WorkOutcome
from metric_platform.ledger.events import EventType
from metric_platform_tests.execution.conftest import EchoWork, FakeRecorder, make_context

STARTED = "execution started"


def test_a_completed_execution_records_started_then_completed_with_the_outcome(
    work: EchoWork, recorder: FakeRecorder
) -> None:
    seen: list[ExecutionResult] = []
    engine = MetricExecutionEngine([work], recorder=recorder, observers=[seen.append])
    context = make_context()
    result = engine.execute(context)
    assert result.status is ExecutionStatus.COMPLETED and result.ok
    assert result.context == context and result.error is None and result.suppressed is None
    assert result.outcome is not None and result.outcome.value == [0, 1, 2]
    assert result.started_at <= result.completed_at and result.duration_ms >= 0
    assert recorder.types() == [EventType.STEP_STARTED, EventType.STEP_COMPLETED]
    started, completed = recorder.calls
    assert started.identity == context.identity.event_identity()
    assert dict(started.data) == {
        "work": "test.echo",
        "tenant_id": "acme",
        "scope": "ac=retail days=2026-03-01",
        "mode": "SCHEDULED",
        "trigger": "BATCH",
        "dry_run": False,
    }
    assert dict(completed.data) == {
        "artifacts": [{"uri": "memory://test.echo[2026-03-01]", "kind": "test-output", "sizeBytes": 3}],
        "summary": {"n": 3},
    }
    assert seen == [result]
    assert work.dry_run_seen == [False]


def test_a_failing_work_records_step_failed_and_its_exception_propagates_unchanged(
    work: EchoWork, recorder: FakeRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    boom = ValueError("boom")
    work.fail_with.append(boom)
    seen: list[ExecutionResult] = []
    engine = MetricExecutionEngine([work], recorder=recorder, observers=[seen.append])
    with caplog.at_level(logging.INFO), pytest.raises(ValueError, match="boom") as raised:
        engine.execute(make_context())
    assert raised.value is boom
    assert recorder.types() == [EventType.STEP_STARTED, EventType.STEP_FAILED]
    assert dict(recorder.calls[1].data) == {
        "error": {"code": "ValueError", "message": "boom", "retryable": False}
    }
    (result,) = seen
    assert result.status is ExecutionStatus.FAILED and result.outcome is None
    assert result.error == StepError("ValueError", "boom", retryable=False)
    assert len(work.runs) == 1  # no retries (seed 000 §5.7)
    end = caplog.records[-1]
    assert end.levelno == logging.ERROR and end.getMessage().startswith("execution failed: ")


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (StorageError("manifest locked"), True),
        (OSError("disk full"), True),
        (TimeoutError("slow"), True),
        (UserError("bad config"), False),
        (KeyError("x"), False),
    ],
)
def test_retryable_says_whether_running_the_same_step_again_may_succeed(
    exc: Exception, retryable: bool
) -> None:
    assert is_retryable(exc) is retryable


def test_an_exception_may_declare_itself_retryable_and_long_messages_are_cut() -> None:
    class Throttled(UserError):
        retryable = True

    assert is_retryable(Throttled("429"))
    error = StepError.from_exception(RuntimeError("x" * 5000))
    assert len(error.message) == MAX_ERROR_MESSAGE and error.message.endswith("...")
    assert StepError.from_exception(RuntimeError()).message == "RuntimeError"


def test_when_step_failed_cannot_be_recorded_the_work_error_still_wins_with_a_note(work: EchoWork) -> None:
    work.fail_with.append(ValueError("boom"))
    recorder = FakeRecorder(fail_on=frozenset({EventType.STEP_FAILED}))
    engine = MetricExecutionEngine([work], recorder=recorder)
    with pytest.raises(ValueError, match="boom") as raised:
        engine.execute(make_context())
    assert any("recording StepFailed failed too" in note for note in raised.value.__notes__)


def test_when_step_completed_cannot_be_recorded_the_step_fails(work: EchoWork) -> None:
    recorder = FakeRecorder(fail_on=frozenset({EventType.STEP_COMPLETED}))
    seen: list[ExecutionResult] = []
    engine = MetricExecutionEngine([work], recorder=recorder, observers=[seen.append])
    with pytest.raises(OSError, match="ledger is down"):
        engine.execute(make_context())
    assert [r.status for r in seen] == [ExecutionStatus.FAILED]
    assert seen[0].error is not None and seen[0].error.code == "OSError"


def test_an_outcome_the_ledger_cannot_store_is_recorded_as_a_failure(recorder: FakeRecorder) -> None:
    class Bad:
        def run(self) -> WorkOutcome:
            return WorkOutcome(summary={"when": dt.date(2026, 1, 1)})

    class BadWork:
        name = "test.bad"

        def prepare(self, context: object) -> PreparedWork:
            return Bad()

    engine = MetricExecutionEngine([BadWork()], recorder=recorder)
    with pytest.raises(InternalError, match="not plain JSON"):
        engine.execute(make_context(work="test.bad"))
    assert recorder.types() == [EventType.STEP_STARTED, EventType.STEP_FAILED]
    assert recorder.calls[1].data["error"]["code"] == "InternalError"


def test_a_dry_run_runs_the_work_inside_the_write_guard_and_reports_what_it_suppressed(
    work: EchoWork, recorder: FakeRecorder
) -> None:
    engine = MetricExecutionEngine([work], recorder=recorder)
    result = engine.execute(make_context(dry_run=True))
    assert result.ok and work.dry_run_seen == [True]
    assert result.suppressed == {"ledger.append": 2, "test.write": 1}
    assert recorder.types() == [EventType.STEP_STARTED, EventType.STEP_COMPLETED]  # built, not stored
    assert recorder.stored == {}
    assert not write_guard.is_dry_run()


def test_a_platform_retry_repeats_step_started_under_one_key_and_records_both_outcomes(
    work: EchoWork, recorder: FakeRecorder
) -> None:
    work.fail_with.append(StorageError("connection reset"))
    engine = MetricExecutionEngine([work], recorder=recorder)
    first = make_context(identity={"run_id": "run-1", "step_id": "s", "engine_attempt_id": 0})
    retry = make_context(
        identity={"run_id": "run-1", "step_id": "s", "engine_attempt_id": 1},
        execution_time=dt.datetime(2026, 3, 2, 6, 31, tzinfo=dt.UTC),  # a retry runs later
    )
    with pytest.raises(StorageError):
        engine.execute(first)
    assert engine.execute(retry).ok
    started = [e for e in recorder.calls if e.event_type is EventType.STEP_STARTED]
    assert [e.identity.engine_attempt_id for e in started] == [0, 1]
    assert started[0].idempotency_key == started[1].idempotency_key
    assert started[0].payload_text == started[1].payload_text  # so the ledger deduplicates it
    assert [e.event_type for e in recorder.stored.values()] == [
        EventType.STEP_STARTED,
        EventType.STEP_FAILED,
        EventType.STEP_COMPLETED,
    ]
    failed = recorder.calls[1]
    assert failed.data["error"] == {"code": "StorageError", "message": "connection reset", "retryable": True}


def test_without_a_recorder_nothing_is_recorded_and_the_work_still_runs(work: EchoWork) -> None:
    assert MetricExecutionEngine([work], recorder=None).execute(make_context()).ok
    assert len(work.runs) == 1


def test_works_need_unique_names() -> None:
    with pytest.raises(UserError, match=r"two works are named 'test\.echo'"):
        MetricExecutionEngine([EchoWork(), EchoWork()], recorder=None)


def test_a_failing_observer_does_not_fail_a_finished_execution(
    work: EchoWork, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_result: ExecutionResult) -> None:
        raise RuntimeError("trace backend down")

    engine = MetricExecutionEngine([work], recorder=None, observers=[broken])
    assert engine.execute(make_context()).ok
    assert any("observer failed" in r.getMessage() for r in caplog.records)


# -- AC-2: an invalid context fails fast, with no side effect ----------------------------------


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"work": "test.ecko"}, r"unknown work 'test.ecko'; did you mean 'test.echo'\?"),
        ({"params": {"n": 0}}, "n must be a positive integer"),
        ({"params": {"n": 2, "colour": "red"}}, r"takes the parameter n only, got \['colour'\]"),
        (
            {"execution_time": dt.datetime(2026, 3, 2, 6, 30)},
            "execution_time: Input should have timezone info",
        ),
        (
            {"scope": {"ac": "retail", "days": {"start": dt.date(2026, 3, 2), "end": dt.date(2026, 3, 1)}}},
            "starts after it ends",
        ),
        ({"tenant_id": ""}, "tenant_id"),
    ],
)
def test_an_invalid_context_fails_fast_with_no_side_effect(
    *,
    changes: dict[str, object],
    problem: str,
    work: EchoWork,
    recorder: FakeRecorder,
    guard_entries: list[bool],
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[ExecutionResult] = []
    engine = MetricExecutionEngine([work], recorder=recorder, observers=[seen.append])
    # model_copy(update=...) skips validation, as model_construct does: execute validates again.
    context = make_context().model_copy(update=changes)
    with caplog.at_level(logging.INFO), pytest.raises(InvalidContextError, match=problem):
        engine.execute(context)
    assert recorder.calls == [] and work.runs == [] and seen == []
    assert guard_entries == []
    (line,) = caplog.records
    assert line.levelno == logging.WARNING and "execution rejected before it started" in line.getMessage()
    assert STARTED not in caplog.text


def test_a_context_that_is_not_one_or_misses_fields_is_rejected(
    work: EchoWork, recorder: FakeRecorder
) -> None:
    engine = MetricExecutionEngine([work], recorder=recorder)
    with pytest.raises(InvalidContextError, match="takes an ExecutionContext"):
        engine.execute({"work": "test.echo"})  # type: ignore[arg-type]
    partial = ExecutionContext.model_construct(tenant_id="acme")  # type: ignore[call-arg]
    with pytest.raises(InvalidContextError, match="mode: Field required; trigger: Field required"):
        engine.execute(partial)
    assert recorder.calls == []
