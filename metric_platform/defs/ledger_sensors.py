"""Run-status sensors that write the ledger's Run* events (seed 004 §1.2, issue 5 item 10).

Run events come from Dagster's view of the run, not from inside ``execute()``, so a run that dies
where no step code runs (killed, cancelled, out of memory, a failed launch) is still recorded.

Two properties matter here:

- *Idempotent*: a sensor may see the same run twice (a restarted daemon, a cursor reset); the
  event's idempotency key and payload are the same, so the ledger keeps one.
- *Durable*: Dagster advances a run-status sensor's cursor even when its function raises, so a
  ledger that is briefly down would lose the event here. These sensors are the low-latency path;
  the reconciler sensor (``ledger_reconciler.py``) reads Dagster's run records from a cursor that
  moves only on success, and records whatever the ledger lacks.

Runs tagged as dry runs (:data:`DRY_RUN_TAG`) are not recorded: a dry run writes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

import dagster as dg

from metric_platform.defs.ledger_identity import AttemptAllocator, logical_attempt, root_run_id
from metric_platform.ledger.events import RUN_STEP, EventIdentity, EventType, JSONValue, NewEvent
from metric_platform.ledger.store import RunEventStore

log = logging.getLogger(__name__)

DRY_RUN_TAG = "metric_platform/dry_run"

RUN_EVENTS: dict[dg.DagsterRunStatus, EventType] = {
    dg.DagsterRunStatus.STARTED: EventType.RUN_STARTED,
    dg.DagsterRunStatus.SUCCESS: EventType.RUN_COMPLETED,
    dg.DagsterRunStatus.FAILURE: EventType.RUN_FAILED,
    dg.DagsterRunStatus.CANCELED: EventType.RUN_CANCELLED,
}


def run_event(
    run: dg.DagsterRun,
    status: dg.DagsterRunStatus,
    instance: dg.DagsterInstance,
    *,
    attempts: AttemptAllocator,
    message: str | None = None,
) -> NewEvent:
    """The Run* event for ``run`` reaching ``status``, under the logical attempt ``attempts`` holds
    for the run (allocating it if the run's steps have not yet). Its data holds no clock reading,
    so the same transition always has the same payload; ``emitted_at`` is when Dagster saw the
    transition (read from ``instance``)."""
    event_type = RUN_EVENTS[status]
    identity = EventIdentity(
        run_id=root_run_id(run),
        step_id=RUN_STEP,
        logical_attempt_id=logical_attempt(run, attempts),
        engine_attempt_id=0,
        plan_version=run.job_snapshot_id or run.job_name,
    )
    data: dict[str, JSONValue] = {"job": run.job_name, "dagsterRunId": run.run_id}
    if message and event_type in (EventType.RUN_FAILED, EventType.RUN_CANCELLED):
        data["rootCause"] = {"code": f"DAGSTER_RUN_{status.value}", "message": message, "retryable": False}
    ref: dict[str, JSONValue] = {
        "dagsterRunId": run.run_id,
        "jobName": run.job_name,
        "parentRunId": run.parent_run_id,
    }
    return NewEvent(
        identity=identity,
        event_type=event_type,
        data=data,
        emitted_at=_transition_time(run, status, instance),
        engine_run_ref=ref,
    )


def record_run_status(
    open_store: Callable[[], RunEventStore],
    run: dg.DagsterRun,
    status: dg.DagsterRunStatus,
    instance: dg.DagsterInstance,
    *,
    message: str | None = None,
) -> str:
    """Append the run's status event; returns what happened, for the sensor's log. A failure is
    logged, not raised: Dagster would advance the cursor anyway, and the reconciler sensor
    (``ledger_reconciler.py``) records the event on a later tick."""
    if run.tags.get(DRY_RUN_TAG) == "true":
        return "dry run: not recorded"
    try:
        with open_store() as store:
            return str(
                store.append(run_event(run, status, instance, attempts=store, message=message)).outcome
            )
    except Exception as exc:
        log.warning(
            "ledger: %s of run %s not recorded now (%s); the reconciler will", status.value, run.run_id, exc
        )
        return f"not recorded now ({type(exc).__name__}); left to the reconciler"


def ledger_run_status_sensors(
    open_store: Callable[[], RunEventStore],
    *,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> Sequence[dg.RunStatusSensorDefinition]:
    """One sensor per run status the ledger records (the low-latency path; the reconciler sensor
    is the durable one)."""
    return [_sensor(status, open_store, default_status) for status in RUN_EVENTS]


def _sensor(
    status: dg.DagsterRunStatus,
    open_store: Callable[[], RunEventStore],
    default_status: dg.DefaultSensorStatus,
) -> dg.RunStatusSensorDefinition:
    event_type = RUN_EVENTS[status]

    @dg.run_status_sensor(
        run_status=status,
        name=f"ledger_run_{status.value.lower()}",
        description=f"Records {event_type.value} in the ledger when a run reaches {status.value}.",
        default_status=default_status,
    )
    def _record(context: dg.RunStatusSensorContext) -> None:
        run = context.dagster_run
        outcome = record_run_status(
            open_store, run, status, context.instance, message=context.dagster_event.message
        )
        context.log.info(f"ledger: {event_type.value} for run {run.run_id}: {outcome}")

    return _record


def _transition_time(
    run: dg.DagsterRun, status: dg.DagsterRunStatus, instance: dg.DagsterInstance
) -> dt.datetime:
    record = instance.get_run_record_by_id(run.run_id)
    seconds = None
    if record is not None:
        seconds = record.start_time if status is dg.DagsterRunStatus.STARTED else record.end_time
    if seconds is None:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
