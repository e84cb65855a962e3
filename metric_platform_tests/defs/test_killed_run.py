"""A run killed mid-step is a failed run in the ledger (issue 6, seed 004 §1.2): Run* events come
from Dagster's view of the run, not from the step, so a step process that dies with SIGKILL (no
``finally``, no StepFailed) still ends as RunFailed, next to the StepStarted the door wrote.

The run is real: ``dagster asset materialize`` in a subprocess, over the test-only code location
``killable_location`` (the platform's definitions with a backend that hangs), with the
multiprocess executor, so the step runs in a process of its own; the test kills that process once
it announced itself. The orchestrating process sees its child die and fails the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from metric_platform.defs.ledger import ledger_sensors
from metric_platform.defs.ledger_reconciler import reconcile
from metric_platform.ledger.events import RUN_STEP, EventType
from metric_platform.ledger.store import RunEventStore
from metric_platform.settings import Settings
from metric_platform_tests.defs.killable_location import PID_FILE_ENV

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")
PARTITION = "2026-11-02"
STEP_TIMEOUT_S = 30.0  # the subprocess loading the location and starting the step
RUN_END_TIMEOUT_S = 20.0  # the orchestrator noticing the dead step and failing the run


def _wait_for(path: Path, process: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists():
            return int(path.read_text())
        if process.poll() is not None:
            pytest.fail(
                f"the run ended ({process.returncode}) before its step blocked:\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.1)
    pytest.fail(
        f"no step announced itself in {path} within {STEP_TIMEOUT_S:.0f}s:\n{log.read_text()[-4000:]}"
    )


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill what is left of the run's processes (only on a failed test)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    # The consolidated event log's base_dir is read from DAGSTER_HOME, in this process too.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def run_and_kill_the_step(dagster_home: Path, settings: Settings, work: Path) -> None:
    """Materialize the family's partition in a subprocess; SIGKILL its step once it blocks."""
    pid_file = work / "step.pid"
    log = work / "run.log"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "METRIC_PLATFORM_HOME": str(settings.home),
        PID_FILE_ENV: str(pid_file),
    }
    command = [
        str(DAGSTER), "asset", "materialize", "-m", "metric_platform_tests.defs.killable_location",
        "--select", "retail/revenue", "--partition", PARTITION,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        step_pid = _wait_for(pid_file, process, log)
        # The step runs in a child of the orchestrating process (multiprocess executor), which
        # must outlive it to record the failure.
        assert step_pid != process.pid
        os.kill(step_pid, signal.SIGKILL)
        try:
            process.wait(timeout=RUN_END_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run did not end {RUN_END_TIMEOUT_S:.0f}s after its step was killed")
    finally:
        _end(process)
    assert process.returncode != 0, log.read_text()[-4000:]


def fire_the_run_failure_sensor(
    settings: Settings, instance: dg.DagsterInstance, run: dg.DagsterRun, event: dg.DagsterEvent
) -> None:
    sensor = {s.name: s for s in ledger_sensors(settings)}["ledger_run_failure"]
    assert isinstance(sensor, dg.RunStatusSensorDefinition)
    sensor(
        dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=event, dagster_instance=instance, dagster_run=run
        )
    )


def test_a_run_whose_step_is_killed_is_run_failed_in_the_ledger(tmp_path: Path, dagster_home: Path) -> None:
    settings = Settings(home=tmp_path / "platform")

    run_and_kill_the_step(dagster_home, settings, tmp_path)

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        [record] = instance.get_run_records()
        run = record.dagster_run
        assert run.status is dg.DagsterRunStatus.FAILURE
        assert run.tags["dagster/partition"] == PARTITION
        step_failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        assert [e.step_key for e in step_failures] == ["retail__revenue"]
        [failure] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert failure.dagster_event is not None

        # Low latency: the run-status sensor records RunFailed (RunStarted is another sensor's).
        fire_the_run_failure_sensor(settings, instance, run, failure.dagster_event)
        # Durable: the reconciler adds what the ledger lacks (RunStarted); RunFailed is a duplicate.
        with RunEventStore.open(settings.platform_url) as store:
            assert reconcile(instance, store, since=None)[0] == 1
            assert reconcile(instance, store, since=None)[0] == 0
            recorded = store.events(run.run_id)

    kinds = [(e.event_type, e.event.identity.step_id) for e in recorded]
    assert kinds.count((EventType.RUN_FAILED, RUN_STEP)) == 1
    assert kinds.count((EventType.RUN_STARTED, RUN_STEP)) == 1
    steps = [(t, s) for t, s in kinds if t.is_step_event]
    assert steps == [(EventType.STEP_STARTED, f"retail__revenue[{PARTITION}]")]  # killed: no StepFailed
    run_failed = next(e for e in recorded if e.event_type is EventType.RUN_FAILED)
    assert run_failed.event.data["dagsterRunId"] == run.run_id
    root_cause = run_failed.event.data["rootCause"]
    assert isinstance(root_cause, dict)
    assert root_cause["code"] == "DAGSTER_RUN_FAILURE"
    # One logical attempt for the run's step and its Run* events.
    assert {e.event.identity.logical_attempt_id for e in recorded} == {1}
