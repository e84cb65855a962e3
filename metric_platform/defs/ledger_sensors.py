"""Run-status sensors that write the ledger's Run* events (seed 004 §1.2, issue 5 item 10).

Run events come from Dagster's view of the run, not from inside ``execute()``, so a run that dies
where no step code runs (killed, cancelled, out of memory, a failed launch) is still recorded. A
sensor may see the same run twice (a restarted daemon, a cursor reset): the event's idempotency key
is the same, so the ledger keeps one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg

from metric_platform.defs.ledger_identity import _RunLookup, chain_position, root_run_id
from metric_platform.ledger.events import RUN_STEP, EventIdentity, EventType, JSONValue, NewEvent
from metric_platform.ledger.store import AppendResult, RunEventStore

RUN_EVENTS: dict[dg.DagsterRunStatus, EventType] = {
    dg.DagsterRunStatus.STARTED: EventType.RUN_STARTED,
    dg.DagsterRunStatus.SUCCESS: EventType.RUN_COMPLETED,
    dg.DagsterRunStatus.FAILURE: EventType.RUN_FAILED,
    dg.DagsterRunStatus.CANCELED: EventType.RUN_CANCELLED,
}


def run_event(
    run: dg.DagsterRun, status: dg.DagsterRunStatus, instance: _RunLookup, *, message: str | None = None
) -> NewEvent:
    """The Run* event for ``run`` reaching ``status``; its data holds no clock reading, so the
    same transition always has the same payload."""
    event_type = RUN_EVENTS[status]
    identity = EventIdentity(
        run_id=root_run_id(run),
        step_id=RUN_STEP,
        logical_attempt_id=chain_position(run, instance),
        engine_attempt_id=0,
        plan_version=run.job_snapshot_id or run.job_name,
    )
    data: dict[str, JSONValue] = {"job": run.job_name, "dagsterRunId": run.run_id}
    if message and event_type in (EventType.RUN_FAILED, EventType.RUN_CANCELLED):
        data["rootCause"] = {"code": f"DAGSTER_RUN_{status.value}", "message": message, "retryable": False}
    ref = {"dagsterRunId": run.run_id, "jobName": run.job_name, "parentRunId": run.parent_run_id}
    return NewEvent(identity=identity, event_type=event_type, data=data, engine_run_ref=ref)


def record_run_status(
    store: RunEventStore,
    run: dg.DagsterRun,
    status: dg.DagsterRunStatus,
    instance: _RunLookup,
    *,
    message: str | None = None,
) -> AppendResult:
    return store.append(run_event(run, status, instance, message=message))


def ledger_run_status_sensors(
    open_store: Callable[[], RunEventStore],
    *,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> Sequence[dg.RunStatusSensorDefinition]:
    """One sensor per run status the ledger records, each appending through ``open_store()``."""
    return [_sensor(status, open_store, default_status) for status in RUN_EVENTS]


def _sensor(
    status: dg.DagsterRunStatus,
    open_store: Callable[[], RunEventStore],
    default_status: dg.DefaultSensorStatus,
) -> dg.RunStatusSensorDefinition:
    @dg.run_status_sensor(
        run_status=status,
        name=f"ledger_run_{status.value.lower()}",
        description=f"Records {RUN_EVENTS[status].value} in the ledger when a run reaches {status.value}.",
        default_status=default_status,
    )
    def _record(context: dg.RunStatusSensorContext) -> None:
        store = open_store()
        try:
            result = record_run_status(
                store, context.dagster_run, status, context.instance, message=context.dagster_event.message
            )
        finally:
            store.close()
        context.log.info(
            f"ledger: {RUN_EVENTS[status].value} for run {context.dagster_run.run_id}: {result.outcome}"
        )

    return _record
