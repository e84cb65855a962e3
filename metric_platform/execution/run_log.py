"""Deterministic start and end lines for every execution (seed 000 §5.6, AC-6).

The text of a line is a pure function of the context and, for the end line, of the status (and,
in a dry run, of the writes it suppressed): two executions of one context log the same lines, so
they can be compared and searched. Clock readings and durations go in the record's structured
``extra`` (``record.mp``), never in the text. A Dagster logger (``context.log``, a
``logging.Logger``) can be passed instead of the module's logger; the lines are the same.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from metric_platform.execution.context import ExecutionContext
from metric_platform.execution.results import ExecutionResult, ExecutionStatus
from metric_platform.ledger.events import JSONValue

LOGGER = logging.getLogger("metric_platform.execution")
EXTRA_KEY = "mp"  # the structured fields are ``record.mp``


def start_message(context: ExecutionContext) -> str:
    return f"{_prefix(context)}execution started: {context.label()}"


def end_message(
    context: ExecutionContext, status: ExecutionStatus, suppressed: Mapping[str, int] | None = None
) -> str:
    line = f"{_prefix(context)}execution {status.value.lower()}: {context.label()}"
    if context.dry_run:
        line += f"; suppressed writes: {suppressed_summary(suppressed or {})}"
    return line


def rejected_message(problem: str) -> str:
    return f"execution rejected before it started: {problem}"


def suppressed_summary(suppressed: Mapping[str, int]) -> str:
    """``"engine.publish x3, ledger.append x2"`` (sorted), or ``"none"``; as ``SuppressedWrites``."""
    if not suppressed:
        return "none"
    return ", ".join(f"{what} x{n}" for what, n in sorted(suppressed.items()))


def log_start(logger: logging.Logger, context: ExecutionContext) -> None:
    logger.info(start_message(context), extra={EXTRA_KEY: {"event": "execution.start", **fields(context)}})


def log_end(logger: logging.Logger, result: ExecutionResult) -> None:
    extra: dict[str, JSONValue] = {
        "event": "execution.end",
        **fields(result.context),
        "status": result.status.value,
        "started_at": result.started_at.isoformat(),
        "completed_at": result.completed_at.isoformat(),
        "duration_ms": round(result.duration_ms, 3),
    }
    if result.suppressed is not None:
        extra["suppressed"] = dict(result.suppressed)
    if result.error is not None:
        extra["error"] = result.error.to_json()
    level = logging.INFO if result.status is ExecutionStatus.COMPLETED else logging.ERROR
    message = end_message(result.context, result.status, result.suppressed)
    if result.replayed_from_seq is not None:
        extra["replayed_from_seq"] = result.replayed_from_seq
        message += f"; completed before (ledger runSeq {result.replayed_from_seq}): not run again"
    logger.log(level, message, extra={EXTRA_KEY: extra})


def log_rejected(logger: logging.Logger, problem: str, work: str | None = None) -> None:
    extra: dict[str, JSONValue] = {"event": "execution.rejected", "problem": problem}
    if work is not None:
        extra["work"] = work
    logger.warning(rejected_message(problem), extra={EXTRA_KEY: extra})


def fields(context: ExecutionContext) -> dict[str, JSONValue]:
    """The context's structured log fields (all context-determined)."""
    identity = context.identity
    days = context.scope.days
    return {
        "work": context.work,
        "tenant_id": context.tenant_id,
        "mode": context.mode.value,
        "trigger": context.trigger.value,
        "dry_run": context.dry_run,
        "scope": context.scope.label(),
        "ac": context.scope.ac,
        "days_start": None if days is None else days.start.isoformat(),
        "days_end": None if days is None else days.end.isoformat(),
        "lookback_days": context.scope.lookback_days,
        "run_id": identity.run_id,
        "step_id": identity.step_id,
        "logical_attempt_id": identity.logical_attempt_id,
        "engine_attempt_id": identity.engine_attempt_id,
        "plan_version": identity.plan_version,
        "correlation_id": context.correlation_id,
        "execution_time": context.execution_time.isoformat(),
    }


def _prefix(context: ExecutionContext) -> str:
    return "DRY RUN " if context.dry_run else ""
