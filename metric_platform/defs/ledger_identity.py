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

# A chain longer than this is a loop in the run storage, not a real re-execution history.
_MAX_CHAIN = 1000


def root_run_id(run: dg.DagsterRun) -> str:
    return run.root_run_id or run.run_id


def attempt_position(run: dg.DagsterRun, instance: dg.DagsterInstance) -> int:
    """1 for an original run; for a re-execution, its place among the runs of its root's group in
    creation order. Two re-executions of one parent ("from failure" twice) thus get different
    logical attempts, where their depth in the parent chain would be equal.

    The group is found by the run-group tags the UI and the daemon set; a re-execution started
    through the Python API without them falls back to its depth in the parent chain."""
    if run.root_run_id is None or run.root_run_id == run.run_id:
        return 1
    group = instance.get_run_group(run.run_id)
    members = list(group[1]) if group is not None else []
    if run.run_id not in {m.run_id for m in members} or len(members) < 2:
        return chain_depth(run, instance)
    records = instance.get_run_records(filters=dg.RunsFilter(run_ids=[m.run_id for m in members]))
    ordered = [r.dagster_run.run_id for r in sorted(records, key=lambda r: r.storage_id)]
    return ordered.index(run.run_id) + 1 if run.run_id in ordered else chain_depth(run, instance)


def chain_depth(run: dg.DagsterRun, instance: dg.DagsterInstance) -> int:
    """1 + the number of parents above ``run`` (bounded: a loop in the run storage is not a chain)."""
    depth = 1
    current: dg.DagsterRun | None = run
    while current is not None and current.parent_run_id and depth < _MAX_CHAIN:
        depth += 1
        current = instance.get_run_by_id(current.parent_run_id)
    return depth


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
    if context.has_partition_key_range:  # a range run (a single-run backfill)
        keys = context.partition_key_range
        partitions = (keys.start, keys.end)
    elif context.has_partition_key:  # one partition
        partitions = (context.partition_key, context.partition_key)
    return RunIdentity(
        run_id=root_run_id(run),
        step_id=step_id(step_key, partitions),
        logical_attempt_id=attempt_position(run, context.instance),
        engine_attempt_id=context.retry_number,
        plan_version=plan_version,
    )
