"""Seed 004 §1.3 identities from a Dagster step (ARCHITECTURE.md §2).

- ``runId``: the root run id, so a re-execution ("from failure", "all steps") joins the ledger run
  of the run it re-executes;
- ``logicalAttemptId``: allocated by the ledger (:class:`AttemptAllocator`, i.e.
  ``RunEventStore.attempt_for``) per Dagster run of the ledger run: 1 for the root run, then 2, 3,
  ... in the order re-executions are first seen. An operator's retry is a new logical attempt;
- ``engineAttemptId``: Dagster's ``retry_number`` for the step (a ``RetryPolicy`` retry, i.e. a
  platform retry): not part of the idempotency key, so the retry deduplicates its StepStarted;
- ``stepId``: the step key, plus the partition key range when the step is partitioned.

The attempt is not derived from Dagster's run storage: a run's place in its run group shifts when
a run is deleted from it, re-executions started without the run-group tags are not in the group
at all, and a deleted root makes the group lookup raise. Numbers the ledger hands out never
change, whatever Dagster later forgets.
"""

from __future__ import annotations

from typing import Protocol

import dagster as dg
from dagster._core.execution.context.system import StepExecutionContext  # what an InputContext holds

from metric_platform.execution.context import RunIdentity


class AttemptAllocator(Protocol):
    """Hands out logical attempts (``RunEventStore`` is one): the same number every time for one
    engine run of a ledger run, distinct increasing numbers for different ones, 1 for the root."""

    def attempt_for(self, run_id: str, engine_run_ref: str) -> int: ...


def root_run_id(run: dg.DagsterRun) -> str:
    return run.root_run_id or run.run_id


def logical_attempt(run: dg.DagsterRun, attempts: AttemptAllocator) -> int:
    """The logical attempt of ``run`` within its ledger run (the root run's)."""
    return attempts.attempt_for(root_run_id(run), run.run_id)


def step_id(step_key: str, partition_range: tuple[str, str] | None) -> str:
    if partition_range is None:
        return step_key
    start, end = partition_range
    return f"{step_key}[{start}]" if start == end else f"{step_key}[{start}..{end}]"


def step_identity(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    *,
    plan_version: str,
    attempts: AttemptAllocator,
) -> RunIdentity:
    """The ledger identity of the step ``context`` runs; its logical attempt comes from ``attempts``
    (a ``RetryPolicy`` retry runs in the same Dagster run, so it keeps its logical attempt)."""
    return identity_of_step(
        context.get_step_execution_context(), plan_version=plan_version, attempts=attempts
    )


def identity_of_step(
    step: StepExecutionContext, *, plan_version: str, attempts: AttemptAllocator
) -> RunIdentity:
    """:func:`step_identity` from Dagster's step context (what an input manager's context has)."""
    run = step.dagster_run
    partitions: tuple[str, str] | None = None
    if step.has_partition_key_range:  # a range run (a single-run backfill)
        keys = step.partition_key_range
        partitions = (keys.start, keys.end)
    elif step.has_partition_key:  # one partition
        partitions = (step.partition_key, step.partition_key)
    return RunIdentity(
        run_id=root_run_id(run),
        step_id=step_id(step.step.key, partitions),
        logical_attempt_id=logical_attempt(run, attempts),
        engine_attempt_id=step.previous_attempt_count,
        plan_version=plan_version,
    )
