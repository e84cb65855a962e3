"""Assets and jobs for the Dagster-level tests of ``defs/``, defined at module level so that
``dg.reconstructable`` can rebuild a job for ``dg.execute_job`` (re-executions need that).

Each asset body records the ledger identity of its step (``step_identity``) in :data:`seen`, its
logical attempt allocated by the ledger store the test puts in :data:`attempts`; the jobs run in
process, so the test reads what the bodies recorded. Bodies take their context from
``AssetExecutionContext.get()``: Dagster rejects a ``context`` parameter whose annotation is a
string, which ``from __future__ import annotations`` makes every annotation.
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from metric_platform.defs.ledger_identity import AttemptAllocator, step_identity
from metric_platform.execution.context import RunIdentity

PLAN = "plan-test"
DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"

seen: list[RunIdentity] = []  # the identities asset bodies saw, in order
failures: list[Exception] = []  # raised by the next runs of ``flaky``, one each
before_identity: list[Callable[[], None]] = []  # called by the next run of ``flaky``, first thing


class Attempts:
    """The allocator the asset bodies take logical attempts from: the test's ledger store."""

    def __init__(self) -> None:
        self.store: AttemptAllocator | None = None

    def attempt_for(self, run_id: str, engine_run_ref: str) -> int:
        if self.store is None:
            msg = "no ledger store: use the `ledger` fixture (metric_platform_tests/defs/conftest.py)"
            raise RuntimeError(msg)
        return self.store.attempt_for(run_id, engine_run_ref)


attempts = Attempts()


@dg.asset
def flaky() -> None:
    context = dg.AssetExecutionContext.get()
    while before_identity:
        before_identity.pop(0)()
    seen.append(step_identity(context, plan_version=PLAN, attempts=attempts))
    if failures:
        raise failures.pop(0)


@dg.asset(retry_policy=dg.RetryPolicy(max_retries=1))
def retried() -> None:
    context = dg.AssetExecutionContext.get()
    identity = step_identity(context, plan_version=PLAN, attempts=attempts)
    seen.append(identity)
    if identity.engine_attempt_id == 0:
        msg = "the first try fails; Dagster's RetryPolicy runs the step again"
        raise RuntimeError(msg)


@dg.asset(partitions_def=DAILY)
def daily() -> None:
    context = dg.AssetExecutionContext.get()
    seen.append(step_identity(context, plan_version=PLAN, attempts=attempts))


@dg.asset
def succeeds() -> None:
    """A run that succeeds (run-status sensor tests)."""


@dg.asset
def fails() -> None:
    msg = "this asset always fails"
    raise RuntimeError(msg)


retried_job = dg.define_asset_job("retried_job", selection=[retried], executor_def=dg.in_process_executor)
flaky_job = dg.define_asset_job("flaky_job", selection=[flaky], executor_def=dg.in_process_executor)
daily_job = dg.define_asset_job("daily_job", selection=[daily], executor_def=dg.in_process_executor)
fails_job = dg.define_asset_job("fails_job", selection=[fails], executor_def=dg.in_process_executor)
succeeds_job = dg.define_asset_job("succeeds_job", selection=[succeeds], executor_def=dg.in_process_executor)

defs = dg.Definitions(
    assets=[flaky, retried, daily, succeeds, fails],
    jobs=[flaky_job, retried_job, daily_job, succeeds_job, fails_job],
)


def flaky_job_def() -> dg.JobDefinition:
    """``flaky_job``, for ``dg.reconstructable``."""
    return defs.resolve_job_def("flaky_job")


def retried_job_def() -> dg.JobDefinition:
    """``retried_job``, for ``dg.reconstructable``."""
    return defs.resolve_job_def("retried_job")


def fails_job_def() -> dg.JobDefinition:
    """``fails_job``, for ``dg.reconstructable``."""
    return defs.resolve_job_def("fails_job")


def reset() -> None:
    seen.clear()
    failures.clear()
    before_identity.clear()
    attempts.store = None


def reexecute(
    instance: dg.DagsterInstance, parent: dg.JobExecutionResult, *, ui_tags: bool = True
) -> dg.JobExecutionResult:
    """Re-execute ``flaky`` of ``parent`` (a ``flaky_job`` run). ``ui_tags``: with the run-group
    tags Dagster's UI and daemon set on a re-execution (``create_reexecuted_run``); ``execute_job``
    alone sets none."""
    run = parent.dagster_run
    root = run.root_run_id or run.run_id
    tags = {"dagster/parent_run_id": run.run_id, "dagster/root_run_id": root} if ui_tags else None
    options = dg.ReexecutionOptions(parent_run_id=run.run_id, step_selection=["flaky"])
    return dg.execute_job(
        dg.reconstructable(flaky_job_def), instance=instance, tags=tags, reexecution_options=options
    )
