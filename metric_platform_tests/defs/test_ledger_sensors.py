"""The ledger's run-status sensors, called with contexts built from real Dagster runs: each records
its Run* event under the root run id, once however often it fires (seed 004 §1.2-1.3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from metric_platform.defs.ledger_sensors import DRY_RUN_TAG, ledger_run_status_sensors, run_event
from metric_platform.errors import StorageError
from metric_platform.ledger.events import RUN_STEP, EventType, StoredEvent
from metric_platform.ledger.projection import RunStatus
from metric_platform.ledger.projector import Projector, load_snapshot
from metric_platform.ledger.spool import Spool
from metric_platform.ledger.store import RunEventStore
from metric_platform.platform_db import open_platform_db
from metric_platform_tests.defs import dagster_jobs as jobs

SENSORS = ("ledger_run_started", "ledger_run_success", "ledger_run_failure", "ledger_run_canceled")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    jobs.reset()
    with dg.instance_for_test() as instance:
        yield instance
    jobs.reset()


@pytest.fixture
def platform_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'platform.sqlite'}"
    open_platform_db(url).dispose()
    return url


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


def run_start_event(result: dg.ExecuteInProcessResult) -> dg.DagsterEvent:
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
    sensors: dict[str, dg.RunStatusSensorDefinition], instance: dg.DagsterInstance, platform_url: str
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
    assert recorded[1].event.engine_run_ref is not None
    assert recorded[1].event.engine_run_ref["parentRunId"] == original.run_id
    with RunEventStore.open(platform_url) as store:
        Projector(store.engine).poll()
        snapshot = load_snapshot(store.engine, original.run_id)
    assert snapshot is not None and snapshot.status is RunStatus.COMPLETED
    assert snapshot.run_attempt_id == 2 and snapshot.root_cause is None


def test_run_event_of_a_canceled_status_without_a_message_has_no_root_cause(
    instance: dg.DagsterInstance,
) -> None:
    run = instance.create_run_for_job(job_def=jobs.defs.resolve_job_def("succeeds_job"))

    event = run_event(run, dg.DagsterRunStatus.CANCELED, instance)

    assert event.event_type is EventType.RUN_CANCELLED
    assert event.identity.run_id == run.run_id and event.identity.step_id == RUN_STEP
    assert event.data == {"job": "succeeds_job", "dagsterRunId": run.run_id}
    assert event.identity.plan_version == (run.job_snapshot_id or run.job_name)


def test_a_dry_run_is_not_recorded(
    sensors: dict[str, dg.RunStatusSensorDefinition], instance: dg.DagsterInstance, platform_url: str
) -> None:
    result = dg.materialize([jobs.succeeds], instance=instance, tags={DRY_RUN_TAG: "true"})

    fire(sensors["ledger_run_started"], instance, result.dagster_run, run_start_event(result))
    fire(sensors["ledger_run_success"], instance, result.dagster_run, result.get_run_success_event())

    with RunEventStore.open(platform_url) as store:
        assert store.run_ids() == []


def test_an_event_the_ledger_cannot_take_is_spooled_and_replayed_on_the_next_tick(
    instance: dg.DagsterInstance, platform_url: str, tmp_path: Path
) -> None:
    """Dagster advances a run-status sensor's cursor even when it raises: an outage must not lose
    the event."""
    opened: list[int] = []

    def open_store() -> RunEventStore:  # down on the first tick, back on the next
        opened.append(1)
        if len(opened) == 1:
            msg = "the platform database is unreachable"
            raise StorageError(msg)
        return RunEventStore.open(platform_url)

    spool = Spool(tmp_path / "spool")
    sensors = {s.name: s for s in ledger_run_status_sensors(open_store, spool=spool)}
    result = dg.materialize([jobs.succeeds], instance=instance)

    fire(sensors["ledger_run_started"], instance, result.dagster_run, run_start_event(result))
    assert len(spool.pending()) == 1 and events(platform_url, result.run_id) == []

    fire(sensors["ledger_run_success"], instance, result.dagster_run, result.get_run_success_event())

    assert spool.pending() == []
    recorded = events(platform_url, result.run_id)
    assert [(e.run_seq, e.event_type) for e in recorded] == [
        (1, EventType.RUN_STARTED),
        (2, EventType.RUN_COMPLETED),
    ]
