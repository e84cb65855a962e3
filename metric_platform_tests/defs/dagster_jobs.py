"""Assets and jobs for the Dagster-level tests of ``defs/``, defined at module level so that
``dg.reconstructable`` can rebuild a job for ``dg.execute_job`` (re-executions need that).

Each asset body records the ledger identity of its step (``step_identity``) in :data:`seen`; the
jobs run in process, so the test reads what the bodies recorded. Bodies take their context from
``AssetExecutionContext.get()``: Dagster rejects a ``context`` parameter whose annotation is a
string, which ``from __future__ import annotations`` makes every annotation.
"""

from __future__ import annotations

import dagster as dg

from metric_platform.defs.ledger_identity import step_identity
from metric_platform.execution.context import RunIdentity

PLAN = "plan-test"
DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"

seen: list[RunIdentity] = []  # the identities asset bodies saw, in order
failures: list[Exception] = []  # raised by the next runs of ``flaky``, one each


@dg.asset
def flaky() -> None:
    context = dg.AssetExecutionContext.get()
    seen.append(step_identity(context, plan_version=PLAN))
    if failures:
        raise failures.pop(0)


@dg.asset(retry_policy=dg.RetryPolicy(max_retries=1))
def retried() -> None:
    context = dg.AssetExecutionContext.get()
    identity = step_identity(context, plan_version=PLAN)
    seen.append(identity)
    if identity.engine_attempt_id == 0:
        msg = "the first try fails; Dagster's RetryPolicy runs the step again"
        raise RuntimeError(msg)


@dg.asset(partitions_def=DAILY)
def daily() -> None:
    context = dg.AssetExecutionContext.get()
    seen.append(step_identity(context, plan_version=PLAN))


@dg.asset
def succeeds() -> None:
    """A run that succeeds (run-status sensor tests)."""


@dg.asset
def fails() -> None:
    msg = "this asset always fails"
    raise RuntimeError(msg)


flaky_job = dg.define_asset_job("flaky_job", selection=[flaky], executor_def=dg.in_process_executor)
daily_job = dg.define_asset_job("daily_job", selection=[daily], executor_def=dg.in_process_executor)
succeeds_job = dg.define_asset_job("succeeds_job", selection=[succeeds], executor_def=dg.in_process_executor)

defs = dg.Definitions(
    assets=[flaky, retried, daily, succeeds, fails], jobs=[flaky_job, daily_job, succeeds_job]
)


def flaky_job_def() -> dg.JobDefinition:
    """``flaky_job``, for ``dg.reconstructable``."""
    return defs.resolve_job_def("flaky_job")


def reset() -> None:
    seen.clear()
    failures.clear()
