"""Run one engine-backed work as a one-step ledger run: how the CLI's writing commands execute.

The command builds a batch context (``execution.run_batch``), and the one ``execute`` runs it with
the ledger recorder; around it the runner records RunStarted and RunCompleted / RunFailed itself
(for Dagster runs, run-status sensors do that: ``defs/ledger_sensors.py``). Under a dry run the
whole of it, ledger included, runs inside the write guard: nothing is created or written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from metric_platform import write_guard
from metric_platform.execution.adapters import BatchParams, run_batch
from metric_platform.execution.context import ExecutionContext, ExecutionMode
from metric_platform.execution.engine import MetricExecutionEngine
from metric_platform.execution.results import ExecutionResult
from metric_platform.ledger.events import EventType, JSONValue
from metric_platform.ledger.recorder import LedgerRecorder
from metric_platform.ledger.spool import Spool
from metric_platform.ledger.store import RunEventStore
from metric_platform.works.engine_works import engine_works
from metric_platform.works.plan_version import plan_version
from metric_platform.works.workspace import EngineWorkspace

log = logging.getLogger(__name__)


def batch_context(
    workspace: EngineWorkspace,
    work: str,
    params: Mapping[str, Any],
    *,
    days: tuple[dt.date, dt.date] | None = None,
    dry_run: bool = False,
    mode: ExecutionMode = ExecutionMode.MANUAL,
    run_id: str | None = None,
) -> ExecutionContext:
    """The batch adapter's context for ``work`` on the workspace's AC (a manual run by the user)."""
    ac = workspace.ac
    return run_batch(
        BatchParams(
            tenant_id=ac.tenant_id,
            ac=ac.name,
            work=work,
            params=dict(params),
            partition_start=days[0].isoformat() if days else None,
            partition_end=days[1].isoformat() if days else None,
            mode=mode,
            triggered_by=_user() if mode is ExecutionMode.MANUAL else None,
            dry_run=dry_run,
            run_id=run_id,
            plan_version=plan_version(ac, work, params),
        )
    )


def run_work(workspace: EngineWorkspace, context: ExecutionContext) -> ExecutionResult:
    """Execute ``context`` with the workspace's works, recorded in the platform database's ledger."""
    works = engine_works(workspace)
    # An invalid context fails here, before the ledger is opened or RunStarted recorded (AC-2).
    context = MetricExecutionEngine(works, recorder=None).validate(context)
    with write_guard.dry_run(context.dry_run) as suppressed, _recorder(workspace) as recorder:
        engine = MetricExecutionEngine(works, recorder=recorder)
        identity = context.identity

        def record(status: EventType, **data: JSONValue) -> None:
            recorder.record_run_status(
                identity.run_id,
                status,
                data={"work": context.work, **data},
                plan_version=identity.plan_version,
                logical_attempt_id=identity.logical_attempt_id,
            )

        record(EventType.RUN_STARTED)
        try:
            result = engine.execute(context)
        except BaseException as exc:
            try:
                cause = {"code": type(exc).__name__, "message": str(exc)[:2000], "retryable": False}
                record(EventType.RUN_FAILED, rootCause=cause)
            except Exception:  # the work's own error is what the user needs to see
                log.exception("could not record RunFailed for run %s", identity.run_id)
            raise
        record(EventType.RUN_COMPLETED)
    if suppressed is not None:  # the run's own events count too, not only the step's writes
        result = dataclasses.replace(result, suppressed=dict(suppressed.counts))
    return result


@contextmanager
def _recorder(workspace: EngineWorkspace) -> Iterator[LedgerRecorder]:
    settings = workspace.settings
    store = RunEventStore.open(settings.platform_url)
    try:
        yield LedgerRecorder(store, Spool(settings.spool_dir), budget_ms=settings.ledger_write_budget_ms)
    finally:
        store.close()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): still a manual run
        return "cli"
