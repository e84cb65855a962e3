"""How Dagster step code enters the one execution door (seed 000; ARCHITECTURE.md §3).

An asset body, an asset check, the engine input manager and the dry-run job all do the same three
things, here: take the step's ledger identity from Dagster (``ledger_identity.step_identity``),
build a batch context for the work and the partition's days (``execution.run_batch``), and
``execute`` it with the ledger recorder. What the work does, and how its outcome becomes Dagster
events, is the caller's business; nothing here names a metric.

Run* events are not written here: run-status sensors and the reconciler record them
(``ledger_sensors.py``), because a run can die where no step code runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.execution.context.system import StepExecutionContext

from metric_platform import write_guard
from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DataAPIBackend, DateWindow
from metric_platform.defs.ledger_identity import identity_of_step
from metric_platform.errors import UserError
from metric_platform.execution.adapters import BatchParams, run_batch
from metric_platform.execution.context import ExecutionMode
from metric_platform.execution.engine import MetricExecutionEngine
from metric_platform.execution.results import ExecutionResult
from metric_platform.ledger.recorder import LedgerRecorder
from metric_platform.ledger.spool import Spool
from metric_platform.ledger.store import RunEventStore
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform.works.engine_works import engine_works
from metric_platform.works.plan_version import plan_version
from metric_platform.works.workspace import EngineWorkspace

StepContext = (
    dg.AssetExecutionContext | dg.OpExecutionContext | dg.AssetCheckExecutionContext | dg.InputContext
)

# Run tags that mean "started by automation, not by a person": the run is SCHEDULED (seed 001).
_AUTOMATED_TAGS = (
    "dagster/sensor_name",
    "dagster/schedule_name",
    "dagster/backfill",
    "dagster/from_automation_condition",
)


@dataclass(frozen=True)
class Door:
    """The execution door for the Dagster definitions of a set of ACs (one workspace each)."""

    settings: Settings
    workspaces: Mapping[str, EngineWorkspace]

    @classmethod
    def for_acs(
        cls,
        acs: Sequence[AnalyticalContext],
        settings: Settings,
        *,
        today: dt.date | None = None,
        open_backend: Callable[[AnalyticalContext], DataAPIBackend] = backend_for,
    ) -> Door:
        return cls(
            settings,
            {ac.name: EngineWorkspace(ac, settings, today=today, open_backend=open_backend) for ac in acs},
        )

    def workspace(self, ac_name: str) -> EngineWorkspace:
        return self.workspaces[ac_name]

    def whole_range(self, ac_name: str) -> DateWindow:
        """The days an unpartitioned asset covers: the AC's partitions up to yesterday (by the
        engine's clock)."""
        workspace = self.workspaces[ac_name]
        ac = workspace.ac
        end = ac.partitions.end_date or (workspace.today or dt.date.today()) - dt.timedelta(days=1)
        return DateWindow(ac.partitions.start_date, max(end, ac.partitions.start_date))

    def execute(
        self,
        context: StepContext,
        ac_name: str,
        work: str,
        params: Mapping[str, Any],
        *,
        window: DateWindow | None = None,
        dry_run: bool = False,
        step_suffix: str = "",
    ) -> ExecutionResult:
        """Run ``work`` for the step ``context`` runs, through ``execute``, recorded in the ledger
        (under ``dry_run``, ledger included, nothing is written)."""
        step = _step_of(context)
        workspace = self.workspaces[ac_name]
        ac = workspace.ac
        version = plan_version(ac, work, params)
        run = step.dagster_run
        automated = next((tag for tag in _AUTOMATED_TAGS if tag in run.tags), None)
        with write_guard.dry_run(dry_run), RunEventStore.open(self.settings.platform_url) as store:
            identity = identity_of_step(step, plan_version=version, attempts=store)
            batch = BatchParams(
                tenant_id=ac.tenant_id,
                ac=ac.name,
                work=work,
                params=dict(params),
                partition_start=window.start.isoformat() if window else None,
                partition_end=window.end.isoformat() if window else None,
                mode=ExecutionMode.SCHEDULED if automated else ExecutionMode.MANUAL,
                triggered_by=f"{automated}={run.tags[automated]}"
                if automated
                else run.tags.get("user", "dagster"),
                dry_run=dry_run,
                run_id=identity.run_id,
                step_id=identity.step_id + step_suffix,
                logical_attempt_id=identity.logical_attempt_id,
                engine_attempt_id=identity.engine_attempt_id,
                plan_version=version,
                correlation_id=run.run_id,
            )
            recorder = LedgerRecorder(
                store, Spool(self.settings.spool_dir), budget_ms=self.settings.ledger_write_budget_ms
            )
            engine = MetricExecutionEngine(engine_works(workspace), recorder=recorder, logger=step.log)
            try:
                return engine.execute(run_batch(batch))
            except UserError as exc:  # rejected before anything ran (an unknown name, a bad context)
                raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from None


def _step_of(context: StepContext) -> StepExecutionContext:
    if isinstance(context, dg.InputContext):
        return context.step_context
    if isinstance(context, dg.AssetCheckExecutionContext):
        return context.op_execution_context.get_step_execution_context()
    return context.get_step_execution_context()


def raise_on_failure(result: ExecutionResult) -> None:
    """A failed execution fails the Dagster step with the work's own message (a user error says
    how to fix it); Dagster's retry policy is told whether a retry can help."""
    if result.ok:
        return
    error = result.error
    assert error is not None
    identity = result.context.identity
    raise dg.Failure(
        description=f"{error.code}: {error.message}",
        metadata={
            "ledger_run": identity.run_id,
            "ledger_step": identity.step_id,
            "retryable": error.retryable,
        },
        allow_retries=error.retryable,
    )
