"""``step_identity`` inside real Dagster runs (seed 004 §1.3, ARCHITECTURE.md §2): runId is the root
run id, stepId the step key (plus the partitions), logicalAttemptId the run's place among the runs
of its re-execution group, engineAttemptId Dagster's retry number (not part of the idempotency key)."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest

from metric_platform.defs.ledger_identity import attempt_position, root_run_id, step_id
from metric_platform.execution.context import RunIdentity
from metric_platform.ledger.events import EventType, NewEvent
from metric_platform_tests.defs import dagster_jobs as jobs


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    jobs.reset()
    with dg.instance_for_test() as instance:
        yield instance
    jobs.reset()


def test_an_unpartitioned_step_is_its_run_and_step_key_at_attempt_one(instance: dg.DagsterInstance) -> None:
    result = dg.materialize([jobs.flaky], instance=instance)

    assert result.success
    expected = RunIdentity(
        run_id=result.run_id,
        step_id="flaky",
        logical_attempt_id=1,
        engine_attempt_id=0,
        plan_version=jobs.PLAN,
    )
    assert jobs.seen == [expected]


def test_a_one_partition_step_names_its_partition(instance: dg.DagsterInstance) -> None:
    result = dg.materialize([jobs.daily], instance=instance, partition_key="2026-03-04")

    assert result.success
    (identity,) = jobs.seen
    assert identity.run_id == result.run_id
    assert identity.step_id == "daily[2026-03-04]"


def test_a_partition_range_step_names_its_range(instance: dg.DagsterInstance) -> None:
    tags = {jobs.PARTITION_RANGE_START: "2026-03-01", jobs.PARTITION_RANGE_END: "2026-03-03"}
    result = jobs.defs.resolve_job_def("daily_job").execute_in_process(instance=instance, tags=tags)

    assert result.success
    (identity,) = jobs.seen
    assert (identity.run_id, identity.step_id) == (result.run_id, "daily[2026-03-01..2026-03-03]")
    assert (identity.logical_attempt_id, identity.engine_attempt_id) == (1, 0)


def test_a_platform_retry_is_the_same_logical_attempt_with_the_next_engine_attempt(
    instance: dg.DagsterInstance,
) -> None:
    result = dg.materialize([jobs.retried], instance=instance)

    assert result.success
    first, retry = jobs.seen
    assert (first.engine_attempt_id, retry.engine_attempt_id) == (0, 1)
    assert retry.model_copy(update={"engine_attempt_id": 0}) == first
    assert (first.run_id, first.step_id, first.logical_attempt_id) == (result.run_id, "retried", 1)
    # So the retry's StepStarted has the first try's idempotency key: the ledger keeps one.
    keys = {NewEvent(i.event_identity(), EventType.STEP_STARTED).idempotency_key for i in (first, retry)}
    assert len(keys) == 1


def reexecute(
    instance: dg.DagsterInstance, parent: dg.JobExecutionResult, *, ui_tags: bool = True
) -> dg.JobExecutionResult:
    """Re-execute ``parent`` from failure. ``ui_tags``: with the run-group tags Dagster's UI and
    daemon set on a re-execution (``create_reexecuted_run``); ``execute_job`` alone sets none."""
    run = parent.dagster_run
    tags = {"dagster/parent_run_id": run.run_id, "dagster/root_run_id": root_run_id(run)} if ui_tags else None
    options = dg.ReexecutionOptions(parent_run_id=run.run_id, step_selection=["flaky"])
    return dg.execute_job(
        dg.reconstructable(jobs.flaky_job_def), instance=instance, tags=tags, reexecution_options=options
    )


def test_a_reexecution_joins_the_root_run_as_the_next_logical_attempt(instance: dg.DagsterInstance) -> None:
    jobs.failures.extend([RuntimeError("the original run fails"), RuntimeError("its re-execution fails")])
    original = dg.execute_job(dg.reconstructable(jobs.flaky_job_def), instance=instance)

    again = reexecute(instance, original)
    third = reexecute(instance, again)

    assert (original.success, again.success, third.success) == (False, False, True)
    assert len({original.run_id, again.run_id, third.run_id}) == 3
    assert [i.run_id for i in jobs.seen] == [original.run_id] * 3, "the root run id, every time"
    assert [i.logical_attempt_id for i in jobs.seen] == [1, 2, 3]
    assert [(i.step_id, i.engine_attempt_id) for i in jobs.seen] == [("flaky", 0)] * 3
    assert root_run_id(third.dagster_run) == original.run_id


def test_two_reexecutions_of_one_run_are_two_logical_attempts(instance: dg.DagsterInstance) -> None:
    """An operator re-executing the same failed run twice makes two attempts: they must not share
    an idempotency key (their events would be taken for duplicates, or conflict)."""
    jobs.failures.append(RuntimeError("the original run fails"))
    original = dg.execute_job(dg.reconstructable(jobs.flaky_job_def), instance=instance)

    first, second = reexecute(instance, original), reexecute(instance, original)

    assert (first.success, second.success) == (True, True)
    assert first.dagster_run.parent_run_id == second.dagster_run.parent_run_id == original.run_id
    assert [i.logical_attempt_id for i in jobs.seen] == [1, 2, 3]
    assert [attempt_position(r.dagster_run, instance) for r in (original, first, second)] == [1, 2, 3]
    keys = {NewEvent(i.event_identity(), EventType.STEP_COMPLETED).idempotency_key for i in jobs.seen}
    assert len(keys) == 3


def test_reexecutions_through_the_python_api_are_numbered_too(instance: dg.DagsterInstance) -> None:
    jobs.failures.extend([RuntimeError("the original run fails"), RuntimeError("its re-execution fails")])
    original = dg.execute_job(dg.reconstructable(jobs.flaky_job_def), instance=instance)

    again = reexecute(instance, original, ui_tags=False)
    third = reexecute(instance, again, ui_tags=False)

    assert third.success and third.dagster_run.root_run_id == original.run_id
    assert [i.logical_attempt_id for i in jobs.seen] == [1, 2, 3]


@pytest.mark.parametrize(
    ("partitions", "expected"),
    [
        (None, "asset"),
        (("2026-03-04", "2026-03-04"), "asset[2026-03-04]"),
        (("2026-03-01", "2026-03-31"), "asset[2026-03-01..2026-03-31]"),
    ],
)
def test_step_id_adds_the_partitions_to_the_step_key(
    partitions: tuple[str, str] | None, expected: str
) -> None:
    assert step_id("asset", partitions) == expected
