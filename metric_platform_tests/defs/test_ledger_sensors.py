"""The ledger's run-status sensors, called with contexts built from real Dagster runs: each records
its Run* event under the root run id and the logical attempt the ledger allocated to the Dagster
run (the one its steps use), once however often it fires (seed 004 §1.2-1.3)."""

from __future__ import annotations

import dagster as dg
import pytest

from metric_platform.defs.ledger_reconciler import ledger_reconciler_sensor
from metric_platform.defs.ledger_sensors import DRY_RUN_TAG, ledger_run_status_sensors, run_event
from metric_platform.errors import StorageError
from metric_platform.ledger.events import RUN_STEP, EventType, StoredEvent
from metric_platform.ledger.projection import RunStatus
from metric_platform.ledger.projector import Projector, load_snapshot
from metric_platform.ledger.store import RunEventStore
from metric_platform_tests.defs import dagster_jobs as jobs
from metric_platform_tests.defs.dagster_jobs import reexecute

SENSORS = ("ledger_run_started", "ledger_run_success", "ledger_run_failure", "ledger_run_canceled")


@pytest.fixture
def sensors(platform_url: str) -> dict[str, dg.RunStatusSensorDefinition]:
    return {s.name: s for s in ledger_run_status_sensors(lambda: RunEventStore.open(platform_url))}


def fire(
    sensor: dg.RunStatusSensorDefinition,
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    event: dg.DagsterEvent | None,
) -> None:
    assert event is not None
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=event, dagster_instance=instance, dagster_run=run
    )
    sensor(context)


def events(platform_url: str, run_id: str) -> list[StoredEvent]:
    with RunEventStore.open(platform_url) as store:
        return store.events(run_id)


def run_start_event(result: dg.ExecuteInProcessResult | dg.JobExecutionResult) -> dg.DagsterEvent:
    return next(e for e in result.all_events if e.event_type is dg.DagsterEventType.RUN_START)


def test_one_sensor_per_status_the_ledger_records(sensors: dict[str, dg.RunStatusSensorDefinition]) -> None:
    assert sorted(sensors) == sorted(SENSORS)


def test_a_successful_run_records_run_started_then_run_completed_once(
    sensors: dict[str, dg.RunStatusSensorDefinition], instance: dg.DagsterInstance, platform_url: str
) -> None:
    result = dg.materialize([jobs.succeeds], instance=instance)
    run = result.dagster_run

    for _ in range(2):  # a restarted daemon, a reset cursor: the sensors fire again
        fire(sensors["ledger_run_started"], instance, run, run_start_event(result))
        fire(sensors["ledger_run_success"], instance, run, result.get_run_success_event())

    recorded = events(platform_url, result.run_id)
    assert [(e.run_seq, e.event_type) for e in recorded] == [
        (1, EventType.RUN_STARTED),
        (2, EventType.RUN_COMPLETED),
    ]
    for stored in recorded:
        identity = stored.event.identity
        assert (identity.run_id, identity.step_id, identity.logical_attempt_id) == (
            result.run_id,
            RUN_STEP,
            1,
        )
        assert stored.event.data == {"job": run.job_name, "dagsterRunId": result.run_id}
        assert stored.event.engine_run_ref == {
            "dagsterRunId": result.run_id,
            "jobName": run.job_name,
            "parentRunId": None,
        }


def test_a_failed_run_records_run_failed_with_its_root_cause_once(
    sensors: dict[str, dg.RunStatusSensorDefinition], instance: dg.DagsterInstance, platform_url: str
) -> None:
    result = dg.materialize([jobs.fails], instance=instance, raise_on_error=False)
    assert not result.success

    for _ in range(2):
        fire(sensors["ledger_run_failure"], instance, result.dagster_run, result.get_run_failure_event())

    (stored,) = events(platform_url, result.run_id)
    assert (stored.run_seq, stored.event_type) == (1, EventType.RUN_FAILED)
    cause = stored.event.data["rootCause"]
    assert cause["code"] == "DAGSTER_RUN_FAILURE" and cause["retryable"] is False
    assert "Steps failed: ['fails']" in cause["message"]


def test_a_canceled_run_records_run_cancelled_with_the_reason(
    sensors: dict[str, dg.RunStatusSensorDefinition], instance: dg.DagsterInstance, platform_url: str
) -> None:
    run = instance.create_run_for_job(job_def=jobs.defs.resolve_job_def("succeeds_job"))
    canceled = instance.report_run_canceled(run, message="stopped by the operator")
    stored_run = instance.get_run_by_id(run.run_id)
    assert stored_run is not None and stored_run.status is dg.DagsterRunStatus.CANCELED

    for _ in range(2):
        fire(sensors["ledger_run_canceled"], instance, stored_run, canceled)

    (stored,) = events(platform_url, run.run_id)
    assert stored.event_type is EventType.RUN_CANCELLED
    assert stored.event.data["rootCause"]["message"] == "stopped by the operator"
    assert stored.event.data["job"] == "succeeds_job"


def test_a_reexecution_is_recorded_in_the_root_run_as_its_next_logical_attempt(
    sensors: dict[str, dg.RunStatusSensorDefinition],
    instance: dg.DagsterInstance,
    platform_url: str,
    ledger: RunEventStore,
) -> None:
    job = dg.reconstructable(jobs.flaky_job_def)
    jobs.failures.append(RuntimeError("the first run fails"))
    original = dg.execute_job(job, instance=instance)
    again = dg.execute_job(
        job,
        instance=instance,
        reexecution_options=dg.ReexecutionOptions.from_failure(original.run_id, instance),
    )
    assert (original.success, again.success) == (False, True)

    fire(sensors["ledger_run_failure"], instance, original.dagster_run, original.get_run_failure_event())
    fire(sensors["ledger_run_success"], instance, again.dagster_run, again.get_run_success_event())
    fire(sensors["ledger_run_success"], instance, again.dagster_run, again.get_run_success_event())

    assert events(platform_url, again.run_id) == [], "the re-execution has no ledger run of its own"
    recorded = events(platform_url, original.run_id)
    assert [(e.run_seq, e.event_type, e.event.identity.logical_attempt_id) for e in recorded] == [
        (1, EventType.RUN_FAILED, 1),
        (2, EventType.RUN_COMPLETED, 2),
    ]
    assert recorded[1].event.data["dagsterRunId"] == again.run_id
    assert [i.logical_attempt_id for i in jobs.seen] == [1, 2], "the attempts the steps took"
    assert recorded[1].event.engine_run_ref is not None
    assert recorded[1].event.engine_run_ref["parentRunId"] == original.run_id
    with RunEventStore.open(platform_url) as store:
        Projector(store.engine).poll()
        snapshot = load_snapshot(store.engine, original.run_id)
    assert snapshot is not None and snapshot.status is RunStatus.COMPLETED
    assert snapshot.run_attempt_id == 2 and snapshot.root_cause is None


def test_run_event_of_a_canceled_status_without_a_message_has_no_root_cause(
    instance: dg.DagsterInstance, ledger: RunEventStore
) -> None:
    run = instance.create_run_for_job(job_def=jobs.defs.resolve_job_def("succeeds_job"))

    event = run_event(run, dg.DagsterRunStatus.CANCELED, instance, attempts=ledger)

    assert event.event_type is EventType.RUN_CANCELLED
    assert event.identity.run_id == run.run_id and event.identity.step_id == RUN_STEP
    assert event.data == {"job": "succeeds_job", "dagsterRunId": run.run_id}
    assert event.identity.plan_version == (run.job_snapshot_id or run.job_name)
    assert event.identity.logical_attempt_id == 1 and ledger.attempts(run.run_id) == {run.run_id: 1}


def test_a_run_deleted_from_dagster_between_two_events_of_another_changes_neither_attempt(
    sensors: dict[str, dg.RunStatusSensorDefinition],
    instance: dg.DagsterInstance,
    platform_url: str,
    ledger: RunEventStore,
) -> None:
    """Numbered by its place in Dagster's run group, the second re-execution's RunStarted would be
    attempt 3 and, once the first re-execution is deleted, its RunCompleted attempt 2."""
    jobs.failures.extend([RuntimeError("the original run fails"), RuntimeError("the first retry fails")])
    original = dg.execute_job(dg.reconstructable(jobs.flaky_job_def), instance=instance)
    first, second = reexecute(instance, original), reexecute(instance, original)
    assert (original.success, first.success, second.success) == (False, False, True)

    fire(sensors["ledger_run_started"], instance, second.dagster_run, run_start_event(second))
    instance.delete_run(first.run_id)
    fire(sensors["ledger_run_success"], instance, second.dagster_run, second.get_run_success_event())

    recorded = events(platform_url, original.run_id)
    assert [(e.event_type, e.event.identity.logical_attempt_id) for e in recorded] == [
        (EventType.RUN_STARTED, 3),
        (EventType.RUN_COMPLETED, 3),
    ]
    assert ledger.attempts(original.run_id) == {original.run_id: 1, first.run_id: 2, second.run_id: 3}


def test_a_reexecution_whose_root_run_was_deleted_from_dagster_is_recorded_in_the_roots_ledger_run(
    sensors: dict[str, dg.RunStatusSensorDefinition],
    instance: dg.DagsterInstance,
    platform_url: str,
    ledger: RunEventStore,
) -> None:
    jobs.failures.append(RuntimeError("the original run fails"))
    original = dg.execute_job(dg.reconstructable(jobs.flaky_job_def), instance=instance)
    again = reexecute(instance, original)

    instance.delete_run(original.run_id)
    fire(sensors["ledger_run_success"], instance, again.dagster_run, again.get_run_success_event())

    (stored,) = events(platform_url, original.run_id)
    assert (stored.event_type, stored.event.identity.logical_attempt_id) == (EventType.RUN_COMPLETED, 2)
    assert stored.event.data["dagsterRunId"] == again.run_id


def test_a_reexecution_seen_before_its_root_leaves_attempt_one_to_the_root(
    instance: dg.DagsterInstance, platform_url: str
) -> None:
    """Sensors may see runs in any order (a daemon down for a while, a cursor reset), and the
    ledger may first hear of a run from its run-status sensor, before any step asked."""
    job = dg.reconstructable(jobs.fails_job_def)
    original = dg.execute_job(job, instance=instance)
    options = dg.ReexecutionOptions.from_failure(original.run_id, instance)
    again = dg.execute_job(job, instance=instance, reexecution_options=options)
    assert again.dagster_run.root_run_id == original.run_id

    with RunEventStore.open(platform_url) as store:
        later = run_event(again.dagster_run, dg.DagsterRunStatus.FAILURE, instance, attempts=store)
        first = run_event(original.dagster_run, dg.DagsterRunStatus.FAILURE, instance, attempts=store)

    assert (later.identity.run_id, later.identity.logical_attempt_id) == (original.run_id, 2)
    assert (first.identity.run_id, first.identity.logical_attempt_id) == (original.run_id, 1)


def test_a_dry_run_is_not_recorded(
    sensors: dict[str, dg.RunStatusSensorDefinition], instance: dg.DagsterInstance, platform_url: str
) -> None:
    result = dg.materialize([jobs.succeeds], instance=instance, tags={DRY_RUN_TAG: "true"})

    fire(sensors["ledger_run_started"], instance, result.dagster_run, run_start_event(result))
    fire(sensors["ledger_run_success"], instance, result.dagster_run, result.get_run_success_event())

    with RunEventStore.open(platform_url) as store:
        assert store.run_ids() == []


def test_an_outage_loses_no_run_event_the_reconciler_records_it_from_dagsters_run_records(
    instance: dg.DagsterInstance, platform_url: str
) -> None:
    """Dagster advances a run-status sensor's cursor even when it raises; the reconciler's cursor
    moves only when a tick succeeded, so an outage delays Run* events but loses none."""
    down = [True]

    def open_store() -> RunEventStore:
        if down[0]:
            msg = "the platform database is unreachable"
            raise StorageError(msg)
        return RunEventStore.open(platform_url)

    status_sensors = {s.name: s for s in ledger_run_status_sensors(open_store)}
    reconciler = ledger_reconciler_sensor(open_store)
    ok = dg.materialize([jobs.succeeds], instance=instance)
    failed = dg.materialize([jobs.fails], instance=instance, raise_on_error=False)

    fire(
        status_sensors["ledger_run_started"], instance, ok.dagster_run, run_start_event(ok)
    )  # logged, not raised
    fire(status_sensors["ledger_run_failure"], instance, failed.dagster_run, failed.get_run_failure_event())
    context = dg.build_sensor_context(instance=instance)
    with pytest.raises(StorageError):
        reconciler(context)
    assert context.cursor is None and events(platform_url, ok.run_id) == []

    down[0] = False
    reconciler(context)
    again = dg.build_sensor_context(instance=instance, cursor=context.cursor)
    reconciler(again)  # nothing new: duplicates at most

    assert [e.event_type for e in events(platform_url, ok.run_id)] == [
        EventType.RUN_STARTED,
        EventType.RUN_COMPLETED,
    ]
    assert [e.event_type for e in events(platform_url, failed.run_id)] == [
        EventType.RUN_STARTED,
        EventType.RUN_FAILED,
    ]
    # The run-status sensor's RunFailed (with its root cause) would have been the same event.
    fire(status_sensors["ledger_run_failure"], instance, failed.dagster_run, failed.get_run_failure_event())
    assert len(events(platform_url, failed.run_id)) == 2


def test_the_reconciler_skips_dry_runs_and_moves_its_cursor(
    instance: dg.DagsterInstance, platform_url: str
) -> None:
    reconciler = ledger_reconciler_sensor(lambda: RunEventStore.open(platform_url))
    dry = dg.materialize([jobs.succeeds], instance=instance, tags={DRY_RUN_TAG: "true"})
    context = dg.build_sensor_context(instance=instance)

    reconciler(context)

    assert events(platform_url, dry.run_id) == [] and context.cursor is not None
