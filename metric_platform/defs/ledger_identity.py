"""Seed 004 §1.3 identities from a Dagster step (ARCHITECTURE.md §2).

- ``runId``: the root run id, so a re-execution ("from failure", "all steps") joins the ledger run
  of the run it re-executes;
- ``logicalAttemptId``: the run's place in its re-execution group (1 for the original run, 2 for the
  first re-execution created, ...): an operator's retry is a new logical attempt;
- ``engineAttemptId``: Dagster's ``retry_number`` for the step (a ``RetryPolicy`` retry, i.e. a
  platform retry): not part of the idempotency key, so the retry deduplicates its StepStarted;
- ``stepId``: the step key, plus the partition key range when the step is partitioned.
"""

from __future__ import annotations

import dagster as dg

from metric_platform.execution.context import RunIdentity


def root_run_id(run: dg.DagsterRun) -> str:
    return run.root_run_id or run.run_id


def attempt_position(run: dg.DagsterRun, instance: dg.DagsterInstance) -> int:
    """1 for an original run; for a re-execution, its place among the runs of its root's group in
    creation order. Two re-executions of one parent ("from failure" twice) thus get different
    logical attempts, where their depth in the parent chain would be equal."""
    if run.root_run_id is None or run.root_run_id == run.run_id:
        return 1
    group = instance.get_run_group(run.run_id)
    runs = list(group[1]) if group is not None else [run]
    records = instance.get_run_records(filters=dg.RunsFilter(run_ids=[r.run_id for r in runs]))
    ordered = [r.dagster_run.run_id for r in sorted(records, key=lambda r: r.storage_id)]
    if run.run_id not in ordered:  # the run storage lost it: still a re-execution, after the root
        return max(2, len(ordered) + 1)
    return ordered.index(run.run_id) + 1


def step_id(step_key: str, partition_range: tuple[str, str] | None) -> str:
    if partition_range is None:
        return step_key
    start, end = partition_range
    return f"{step_key}[{start}]" if start == end else f"{step_key}[{start}..{end}]"


def step_identity(
    context: dg.AssetExecutionContext | dg.OpExecutionContext, *, plan_version: str
) -> RunIdentity:
    """The ledger identity of the step ``context`` runs."""
    run = context.run
    step_key = context.get_step_execution_context().step.key
    partitions: tuple[str, str] | None = None
    if context.has_partition_key_range:
        keys = context.partition_key_range
        partitions = (keys.start, keys.end)
    return RunIdentity(
        run_id=root_run_id(run),
        step_id=step_id(step_key, partitions),
        logical_attempt_id=attempt_position(run, context.instance),
        engine_attempt_id=context.retry_number,
        plan_version=plan_version,
    )
