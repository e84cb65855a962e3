"""Seed 004 §1.3 identities from a Dagster step (ARCHITECTURE.md §2).

- ``runId``: the root run id, so a re-execution ("from failure", "all steps") joins the ledger run
  of the run it re-executes;
- ``logicalAttemptId``: the run's position in its re-execution chain (1 for the original run, 2 for
  its first re-execution, ...): an operator's retry is a new logical attempt;
- ``engineAttemptId``: Dagster's ``retry_number`` for the step (a ``RetryPolicy`` retry, i.e. a
  platform retry): not part of the idempotency key, so the retry deduplicates its StepStarted;
- ``stepId``: the step key, plus the partition key range when the step is partitioned.
"""

from __future__ import annotations

from typing import Protocol

import dagster as dg

from metric_platform.execution.context import RunIdentity

# A chain longer than this is a loop in the run storage, not a real re-execution history.
_MAX_CHAIN = 1000


class _RunLookup(Protocol):
    def get_run_by_id(self, run_id: str) -> dg.DagsterRun | None: ...


def root_run_id(run: dg.DagsterRun) -> str:
    return run.root_run_id or run.run_id


def chain_position(run: dg.DagsterRun, instance: _RunLookup) -> int:
    """1 for a run that re-executes nothing, n + 1 for the n-th re-execution down the chain."""
    position = 1
    current: dg.DagsterRun | None = run
    while current is not None and current.parent_run_id and position < _MAX_CHAIN:
        position += 1
        current = instance.get_run_by_id(current.parent_run_id)
    return position


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
        logical_attempt_id=chain_position(run, context.instance),
        engine_attempt_id=context.retry_number,
        plan_version=plan_version,
    )
