"""``step_identity`` inside real Dagster runs (seed 004 §1.3, ARCHITECTURE.md §2): runId is the root
run id, stepId the step key (plus the partitions), logicalAttemptId allocated by the ledger per
Dagster run (1 for the root, then in the order re-executions are first seen, never renumbered
whatever Dagster's run storage later forgets), engineAttemptId Dagster's retry number (not part of
the idempotency key)."""

from __future__ import annotations

import dagster as dg
import pytest

from metric_platform.defs.ledger_identity import root_run_id, step_id
from metric_platform.execution.context import RunIdentity
from metric_platform.ledger.events import EventType, NewEvent
from metric_platform.ledger.store import RunEventStore
from metric_platform_tests.defs import dagster_jobs as jobs
from metric_platform_tests.defs.dagster_jobs import reexecute

# Every Dagster run here allocates its logical attempts from the `ledger` fixture's store.
ledger_attempts = pytest.mark.usefixtures("ledger")


@ledger_attempts
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


@ledger_attempts
def test_a_one_partition_step_names_its_partition(instance: dg.DagsterInstance) -> None:
    result = dg.materialize([jobs.daily], instance=instance, partition_key="2026-03-04")

    assert result.success
    (identity,) = jobs.seen
    assert identity.run_id == result.run_id
    assert identity.step_id == "daily[2026-03-04]"


@ledger_attempts
def test_a_partition_range_step_names_its_range(instance: dg.DagsterInstance) -> None:
    tags = {jobs.PARTITION_RANGE_START: "2026-03-01", jobs.PARTITION_RANGE_END: "2026-03-03"}
    result = jobs.defs.resolve_job_def("daily_job").execute_in_process(instance=instance, tags=tags)

    assert result.success
    (identity,) = jobs.seen
    assert (identity.run_id, identity.step_id) == (result.run_id, "daily[2026-03-01..2026-03-03]")
    assert (identity.logical_attempt_id, identity.engine_attempt_id) == (1, 0)


@ledger_attempts
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


def test_a_platform_retry_in_a_reexecution_keeps_the_reexecutions_logical_attempt(
    instance: dg.DagsterInstance, ledger: RunEventStore
) -> None:
    job = dg.reconstructable(jobs.retried_job_def)
    original = dg.execute_job(job, instance=instance)
    options = dg.ReexecutionOptions(parent_run_id=original.run_id, step_selection=["retried"])
    again = dg.execute_job(job, instance=instance, reexecution_options=options)

    assert original.success and again.success
    assert [(i.logical_attempt_id, i.engine_attempt_id) for i in jobs.seen] == [
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    assert ledger.attempts(original.run_id) == {original.run_id: 1, again.run_id: 2}


@ledger_attempts
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


def test_two_reexecutions_of_one_run_are_two_logical_attempts(
    instance: dg.DagsterInstance, ledger: RunEventStore
) -> None:
    """An operator re-executing the same failed run twice makes two attempts: they must not share
    an idempotency key (their events would be taken for duplicates, or conflict)."""
    jobs.failures.append(RuntimeError("the original run fails"))
    original = dg.execute_job(dg.reconstructable(jobs.flaky_job_def), instance=instance)

    first, second = reexecute(instance, original), reexecute(instance, original)

    assert (first.success, second.success) == (True, True)
    assert first.dagster_run.parent_run_id == second.dagster_run.parent_run_id == original.run_id
    assert [i.logical_attempt_id for i in jobs.seen] == [1, 2, 3]
    assert ledger.attempts(original.run_id) == {original.run_id: 1, first.run_id: 2, second.run_id: 3}
    keys = {NewEvent(i.event_identity(), EventType.STEP_COMPLETED).idempotency_key for i in jobs.seen}
    assert len(keys) == 3


@ledger_attempts
def test_reexecutions_through_the_python_api_are_numbered_too(instance: dg.DagsterInstance) -> None:
    jobs.failures.extend([RuntimeError("the original run fails"), RuntimeError("its re-execution fails")])
    original = dg.execute_job(dg.reconstructable(jobs.flaky_job_def), instance=instance)

    again = reexecute(instance, original, ui_tags=False)
    third = reexecute(instance, again, ui_tags=False)

    assert third.success and third.dagster_run.root_run_id == original.run_id
    assert [i.logical_attempt_id for i in jobs.seen] == [1, 2, 3]


def test_tagged_and_untagged_reexecutions_of_one_run_get_distinct_attempts(
    instance: dg.DagsterInstance, ledger: RunEventStore
) -> None:
    """The UI's re-executions carry the run-group tags, the Python API's none: in Dagster's run
    group the untagged one is missing, yet it is an attempt of the same ledger run all the same."""
    jobs.failures.extend([RuntimeError("the original run fails")] + [RuntimeError("again")] * 2)
    original = dg.execute_job(dg.reconstructable(jobs.flaky_job_def), instance=instance)

    runs = [reexecute(instance, original, ui_tags=tagged) for tagged in (True, False, True, False)]

    assert [r.success for r in runs] == [False, False, True, True]
    assert [i.logical_attempt_id for i in jobs.seen] == [1, 2, 3, 4, 5]
    assert {i.run_id for i in jobs.seen} == {original.run_id}
    expected = {original.run_id: 1} | {r.run_id: n for n, r in enumerate(runs, start=2)}
    assert ledger.attempts(original.run_id) == expected
    keys = {NewEvent(i.event_identity(), EventType.STEP_STARTED).idempotency_key for i in jobs.seen}
    assert len(keys) == 5


def test_a_run_deleted_from_dagster_renumbers_nothing(
    instance: dg.DagsterInstance, ledger: RunEventStore
) -> None:
    """A later re-execution gets a new number, not the deleted run's place in the run group (which
    another run now holds), and the runs already numbered keep theirs."""
    jobs.failures.extend([RuntimeError("the original run fails"), RuntimeError("the first retry fails")])
    original = dg.execute_job(dg.reconstructable(jobs.flaky_job_def), instance=instance)
    first, second = reexecute(instance, original), reexecute(instance, original)

    instance.delete_run(first.run_id)
    third = reexecute(instance, original)

    assert (first.success, second.success, third.success) == (False, True, True)
    assert [i.logical_attempt_id for i in jobs.seen] == [1, 2, 3, 4]
    assert ledger.attempt_for(original.run_id, second.run_id) == 3
    assert ledger.attempts(original.run_id) == {
        original.run_id: 1,
        first.run_id: 2,
        second.run_id: 3,
        third.run_id: 4,
    }


def test_a_reexecution_whose_root_run_is_deleted_from_dagster_while_it_runs_still_joins_it(
    instance: dg.DagsterInstance, ledger: RunEventStore
) -> None:
    """Dagster will not start a re-execution once an ancestor run is gone, but an operator may
    delete the root run while one is running: its steps still join the root's ledger run."""
    jobs.failures.extend([RuntimeError("the original run fails"), RuntimeError("its re-execution fails")])
    original = dg.execute_job(dg.reconstructable(jobs.flaky_job_def), instance=instance)
    again = reexecute(instance, original)

    jobs.before_identity.append(lambda: instance.delete_run(original.run_id))
    third = reexecute(instance, again)

    assert third.success and third.dagster_run.root_run_id == original.run_id
    assert instance.get_run_by_id(original.run_id) is None
    assert [(i.run_id, i.logical_attempt_id) for i in jobs.seen] == [
        (original.run_id, 1),
        (original.run_id, 2),
        (original.run_id, 3),
    ]
    assert ledger.attempts(original.run_id)[third.run_id] == 3


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
