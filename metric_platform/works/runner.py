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
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

from metric_platform import write_guard
from metric_platform.errors import InternalError, StorageError
from metric_platform.execution.adapters import BatchParams, run_batch
from metric_platform.execution.context import ExecutionContext, ExecutionMode
from metric_platform.execution.engine import MetricExecutionEngine
from metric_platform.execution.results import ExecutionResult, StepError
from metric_platform.ledger.events import EventType, JSONValue
from metric_platform.ledger.recorder import LedgerRecorder
from metric_platform.ledger.spool import Spool
from metric_platform.ledger.store import RunEventStore
from metric_platform.settings import Settings
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
    step_id: str | None = None,
    logical_attempt_id: int = 1,
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
            step_id=step_id,
            logical_attempt_id=logical_attempt_id,
            plan_version=plan_version(ac, work, params),
        )
    )


def run_work(workspace: EngineWorkspace, context: ExecutionContext) -> ExecutionResult:
    """Execute ``context`` as a one-step run of its own, recorded in the platform database's ledger."""
    works = engine_works(workspace)
    # An invalid context fails here, before the ledger is opened or RunStarted recorded (AC-2).
    context = MetricExecutionEngine(works, recorder=None).validate(context)
    identity = context.identity
    with LedgerRun(
        workspace,
        run_id=identity.run_id,
        plan_version=identity.plan_version,
        logical_attempt_id=identity.logical_attempt_id,
        dry_run=context.dry_run,
        label=context.work,
    ) as run:
        result = run.execute_context(context)
    if run.suppressed is not None:  # the run's own events count too, not only the step's writes
        result = dataclasses.replace(result, suppressed=dict(run.suppressed.counts))
    return result


class LedgerRun:
    """One ledger run of one or more steps on a workspace (the CLI's commands, the main job).

    RunStarted is recorded on entry and RunCompleted or RunFailed on exit (for Dagster runs,
    run-status sensors record them instead: ``defs/ledger_sensors.py``). Under a dry run all of it,
    ledger included, runs inside the write guard: nothing is created or written.
    """

    def __init__(
        self,
        workspace: EngineWorkspace,
        *,
        run_id: str | None = None,
        plan_version: str = "",
        logical_attempt_id: int = 1,
        mode: ExecutionMode = ExecutionMode.MANUAL,
        dry_run: bool = False,
        label: str = "",
    ) -> None:
        self.workspace = workspace
        self.run_id = run_id or str(uuid.uuid4())
        self.plan_version = plan_version
        self.logical_attempt_id = logical_attempt_id
        self.mode = mode
        self.dry_run = dry_run
        self.label = label
        self.suppressed: write_guard.SuppressedWrites | None = None
        self._stack = ExitStack()
        self._engine: MetricExecutionEngine | None = None
        self._recorder: LedgerRecorder | None = None

    def __enter__(self) -> LedgerRun:
        with ExitStack() as stack:
            self.suppressed = stack.enter_context(write_guard.dry_run(self.dry_run))
            self._recorder = stack.enter_context(ledger_recorder(self.workspace.settings))
            self._engine = MetricExecutionEngine(engine_works(self.workspace), recorder=self._recorder)
            self._record(EventType.RUN_STARTED)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        with self._stack:
            self._replay_spool()
            if exc is None:
                self._record(EventType.RUN_COMPLETED)
                return
            cause = StepError.from_exception(exc).to_json()
            try:
                self._record(EventType.RUN_FAILED, rootCause=cause)
            except Exception:  # the work's own error is what the user needs to see
                log.exception("could not record RunFailed for run %s", self.run_id)

    def execute(
        self,
        work: str,
        params: Mapping[str, Any],
        *,
        days: tuple[dt.date, dt.date] | None = None,
        step_id: str | None = None,
    ) -> ExecutionResult:
        """Run ``work`` as a step of this run (the batch adapter builds its context)."""
        context = batch_context(
            self.workspace,
            work,
            params,
            days=days,
            dry_run=self.dry_run,
            mode=self.mode,
            run_id=self.run_id,
            step_id=step_id,
            logical_attempt_id=self.logical_attempt_id,
        )
        return self.execute_context(context)

    def execute_context(self, context: ExecutionContext) -> ExecutionResult:
        assert self._engine is not None, "use LedgerRun as a context manager"
        return self._engine.execute(context)

    def _replay_spool(self) -> None:
        """Events that failed open (seed 004 §5) wait in the local spool: replay them while the
        ledger is reachable, before this run's last event."""
        assert self._recorder is not None
        if self.dry_run or not Spool(self.workspace.settings.spool_dir).has_pending():
            return
        try:
            report = self._recorder.replay_spool()
        except StorageError as exc:
            log.warning("ledger: the spool could not be replayed now (%s); it stays for the next run", exc)
            return
        log.info(
            "ledger: replayed %d spooled event(s) (%d already recorded)", report.replayed, report.duplicates
        )

    def _record(self, status: EventType, **data: JSONValue) -> None:
        assert self._recorder is not None
        self._recorder.record_run_status(
            self.run_id,
            status,
            data={"label": self.label, **data},
            plan_version=self.plan_version,
            logical_attempt_id=self.logical_attempt_id,
        )


@contextmanager
def ledger_recorder(settings: Settings) -> Iterator[LedgerRecorder]:
    """The ledger recorder over the platform database ``settings`` name (closed afterwards)."""
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


def outcome_value(result: ExecutionResult) -> Any:
    """The value a completed execution produced. A step the ledger had recorded as completed
    before is not run again and has no value: a fresh run (new run id) computes it."""
    if result.outcome is None or result.outcome.value is None:
        msg = (
            f"step {result.context.identity.step_id} of run {result.context.identity.run_id} had completed "
            "before: the ledger answered with its record, which keeps no value; run it as a new run"
        )
        raise InternalError(msg)
    return result.outcome.value
