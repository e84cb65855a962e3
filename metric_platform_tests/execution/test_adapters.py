"""The event and batch adapters: both build the one context type and call the one ``execute``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from metric_platform.execution import (
    AssetMaterialized,
    BatchParams,
    ExecutionContext,
    ExecutionMode,
    ExecutionResult,
    InvalidContextError,
    MetricExecutionEngine,
    Trigger,
    dispatch_batch,
    dispatch_event,
    handle_event,
    run_batch,
)
from metric_platform.execution.step_events import step_started
from metric_platform_tests.execution.conftest import EchoWork, FakeRecorder

OCCURRED = dt.datetime(2026, 3, 2, 4, 0, tzinfo=dt.UTC)


def event_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event_id": "materialization-42",
        "asset_key": ["retail", "some_asset"],
        "partition_start": "2026-03-01",
        "run_id": "dagster-run-7",
        "tenant_id": "acme",
        "occurred_at": OCCURRED.isoformat(),
        "plan_version": "plan-3",
        "work": "test.echo",
        "params": {"n": 2},
    }
    payload.update(changes)
    return payload


def batch_params(**changes: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "tenant_id": "acme",
        "ac": "retail",
        "work": "test.echo",
        "partition_start": "2026-01-01",
        "partition_end": "2026-01-31",
        "triggered_by": "alice",
    }
    params.update(changes)
    return params


def test_event_and_batch_invocations_reach_the_same_execute(
    monkeypatch: pytest.MonkeyPatch, work: EchoWork, recorder: FakeRecorder
) -> None:
    """AC-1, with a spy on the one method: both adapters call it, with the same context type."""
    calls: list[tuple[MetricExecutionEngine, ExecutionContext]] = []
    original = MetricExecutionEngine.execute

    def spy(self: MetricExecutionEngine, context: ExecutionContext, **kw: Any) -> ExecutionResult:
        calls.append((self, context))
        return original(self, context, **kw)

    monkeypatch.setattr(MetricExecutionEngine, "execute", spy)
    engine = MetricExecutionEngine([work], recorder=recorder)
    by_event = dispatch_event(engine, event_payload())
    by_batch = dispatch_batch(engine, batch_params())
    assert [(e, type(c)) for e, c in calls] == [(engine, ExecutionContext), (engine, ExecutionContext)]
    assert [c.trigger for _, c in calls] == [Trigger.EVENT, Trigger.BATCH]
    assert [r.context for r in (by_event, by_batch)] == [c for _, c in calls]
    assert work.runs == [c for _, c in calls]


def test_an_event_maps_to_a_context_that_follows_from_the_event_alone() -> None:
    context = handle_event(event_payload())
    assert context.trigger is Trigger.EVENT and context.mode is ExecutionMode.SCHEDULED
    assert context.scope.ac == "retail" and context.scope.label() == "ac=retail days=2026-03-01"
    assert context.identity.run_id == "event:materialization-42"
    assert context.identity.step_id == "test.echo[2026-03-01]"
    assert context.identity.plan_version == "plan-3"
    assert context.execution_time == OCCURRED and context.correlation_id == "dagster-run-7"
    assert context.triggered_by == "asset:retail/some_asset"
    assert dict(context.params) == {"n": 2}
    # A redelivery, or the job's platform retry, is the same step: the same ledger keys.
    again = handle_event(AssetMaterialized.model_validate(event_payload()))
    retried = handle_event(event_payload(), engine_attempt_id=1)
    assert again == context
    assert step_started(retried).idempotency_key == step_started(context).idempotency_key
    assert handle_event(event_payload(), dry_run=True).dry_run


def test_an_event_over_a_partition_range_scopes_every_day_of_it() -> None:
    context = handle_event(event_payload(partition_start="2026-02-01", partition_end="2026-02-28"))
    assert context.scope.days is not None and context.scope.days.label() == "2026-02-01..2026-02-28"
    assert context.identity.step_id == "test.echo[2026-02-01..2026-02-28]"


def test_an_invalid_event_payload_lists_every_problem() -> None:
    payload = event_payload(event_id="", occurred_at="2026-03-02T04:00:00", partition_start="2026-02-30")
    del payload["tenant_id"]
    with pytest.raises(InvalidContextError) as raised:
        handle_event(payload)
    message = str(raised.value)
    assert message.startswith("invalid domain event: ")
    for problem in (
        "event_id: String should have at least 1 character",
        "tenant_id: Field required",
        "occurred_at: Input should have timezone info",
        "partition_start: partition key '2026-02-30' is not a calendar day",
    ):
        assert problem in message
    with pytest.raises(InvalidContextError, match="has an empty part"):
        handle_event(event_payload(asset_key=["retail", ""]))
    with pytest.raises(InvalidContextError, match="extra_field: Extra inputs are not permitted"):
        handle_event(event_payload(extra_field=1))
    with pytest.raises(
        InvalidContextError, match=r"expected AssetMaterialized \(or a mapping of its fields\), got list"
    ):
        handle_event(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_a_manual_batch_gets_a_fresh_run_id_and_a_step_id_named_by_its_days() -> None:
    now = dt.datetime(2026, 2, 1, 8, 0, tzinfo=dt.UTC)
    first, second = run_batch(batch_params(), now=now), run_batch(BatchParams(**batch_params()), now=now)
    assert first.trigger is Trigger.BATCH and first.mode is ExecutionMode.MANUAL
    assert uuid.UUID(first.identity.run_id).version == 4
    assert first.identity.run_id != second.identity.run_id
    assert first.identity.step_id == "test.echo[2026-01-01..2026-01-31]"
    assert first.execution_time == now and first.triggered_by == "alice"
    whole = run_batch(batch_params(partition_start=None, partition_end=None))
    assert whole.scope.days is None and whole.identity.step_id == "test.echo"


def test_a_scheduled_batch_keeps_the_identity_it_is_given() -> None:
    params = batch_params(
        mode="SCHEDULED",
        run_id="dagster-run-9",
        step_id="daily",
        logical_attempt_id=2,
        engine_attempt_id=1,
        plan_version="p",
        execution_time="2026-02-01T00:00:00+01:00",
        lookback_days=7,
        dry_run=True,
    )
    context = run_batch(params)
    identity = context.identity
    assert (identity.run_id, identity.step_id, identity.logical_attempt_id) == ("dagster-run-9", "daily", 2)
    assert (identity.engine_attempt_id, identity.plan_version) == (1, "p")
    assert context.execution_time == dt.datetime(2026, 1, 31, 23, 0, tzinfo=dt.UTC)
    assert context.scope.lookback_days == 7 and context.dry_run


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"mode": "SCHEDULED"}, "a SCHEDULED run names the orchestrator's run id"),
        ({"triggered_by": None}, "a MANUAL execution names who triggered it"),
        ({"partition_start": None}, "partition_end is given without partition_start"),
        ({"partition_end": "2025-12-31"}, "starts after it ends; give the earlier key first"),
        ({"partition_start": "2026-1-01"}, "is not a day of the form YYYY-MM-DD"),
        ({"mode": "NIGHTLY"}, "mode: Input should be 'MANUAL', 'SCHEDULED' or 'TEST'"),
        ({"work": "bad work!"}, "work: work name 'bad work!' must be letters"),
        ({"lookback_days": -1}, "lookback_days: Input should be greater than or equal to 0"),
    ],
)
def test_invalid_batch_parameters_fail_before_anything_runs(
    changes: dict[str, Any], problem: str, work: EchoWork, recorder: FakeRecorder
) -> None:
    engine = MetricExecutionEngine([work], recorder=recorder)
    with pytest.raises(InvalidContextError, match=problem):
        dispatch_batch(engine, batch_params(**changes))
    assert work.prepared == [] and recorder.calls == []
