"""The single execution entry point (seed 000 §4.1, §5): ``MetricExecutionEngine.execute(context)``.

Every run of metric or alert work, whichever adapter built its context, goes through
:meth:`MetricExecutionEngine.execute`, which:

1. validates the context and lets the named work validate its parameters and scope
   (``Work.prepare``), before any side effect: an invalid context raises
   :class:`InvalidContextError` after logging one rejection line, and nothing else happens;
2. logs the start line, then, inside ``write_guard.dry_run(context.dry_run)``, records
   StepStarted, runs the work, and records StepCompleted, or StepFailed and re-raises the work's
   exception (no retries: seed 000 §5.7; Dagster owns retries);
3. logs the end line (with the suppressed writes of a dry run) and returns an
   :class:`ExecutionResult`.

Idempotent writes are delegated (seed 000 §5.5): the ledger deduplicates events by their
idempotency key and the engine store upserts by entry key, so executing one context twice leaves
the state executing it once leaves. The scaffold itself never names a metric (seed 000 §8).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType

from metric_platform import write_guard
from metric_platform.errors import UserError, did_you_mean
from metric_platform.execution import run_log
from metric_platform.execution.context import ExecutionContext, InvalidContextError, build_context
from metric_platform.execution.results import ExecutionResult, ExecutionStatus, StepError
from metric_platform.execution.step_events import (
    EventRecorder,
    RecordLookup,
    recorded_outcome,
    step_completed,
    step_completed_probe,
    step_failed,
    step_started,
)
from metric_platform.execution.work import PreparedWork, Work, WorkOutcome
from metric_platform.ledger.events import NewEvent, StoredEvent

Observer = Callable[[ExecutionResult], None]
log = logging.getLogger(__name__)


class MetricExecutionEngine:
    """Runs the ``works`` it was given, by name, one context at a time.

    ``recorder`` receives the step events (None: no ledger, e.g. a local CLI run). ``logger``
    receives the start/end lines (default: ``metric_platform.execution``); ``execute`` may name
    another per call (a Dagster ``context.log``). ``observers`` are trace hooks called with every
    result, completed or failed, after its end line.
    """

    def __init__(
        self,
        works: Iterable[Work],
        *,
        recorder: EventRecorder | None,
        logger: logging.Logger | None = None,
        observers: Sequence[Observer] = (),
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        by_name: dict[str, Work] = {}
        for work in works:
            name = work.name
            if name in by_name:
                msg = f"two works are named {name!r}; give every work passed to the engine its own name"
                raise UserError(msg)
            by_name[name] = work
        self._works: Mapping[str, Work] = MappingProxyType(by_name)
        self._recorder = recorder
        self._logger = logger or run_log.LOGGER
        self._observers = tuple(observers)
        self._clock = clock or _utc_now

    @property
    def work_names(self) -> tuple[str, ...]:
        return tuple(sorted(self._works))

    def validate(
        self, context: ExecutionContext, *, logger: logging.Logger | None = None
    ) -> ExecutionContext:
        """Validate ``context`` as :meth:`execute` would (the context, the work's parameters and
        scope) without running anything: for callers that do something of their own first (open a
        ledger, record RunStarted) and must not when the context is invalid."""
        checked, _prepared = self._validated(context, logger or self._logger)
        return checked

    def execute(self, context: ExecutionContext, *, logger: logging.Logger | None = None) -> ExecutionResult:
        """Run ``context`` (see the module docstring); the work's exception propagates unchanged."""
        out = logger or self._logger
        context, prepared = self._validated(context, out)
        run_log.log_start(out, context)
        started_at = self._clock()
        started = time.perf_counter()
        outcome: WorkOutcome | None = None
        error: StepError | None = None
        suppressed: write_guard.SuppressedWrites | None = None
        replayed_from: int | None = None
        try:
            with write_guard.dry_run(context.dry_run) as suppressed:
                prior = None if context.dry_run else self._prior_completion(context)
                if prior is not None:
                    # This logical attempt completed before (a re-execution of the same context, a
                    # platform retry after the outcome was recorded): the ledger's record is the
                    # outcome; running the work again could only contradict it.
                    outcome, replayed_from = recorded_outcome(prior), prior.run_seq
                else:
                    self._record(step_started(context))
                    try:
                        produced = prepared.run()
                        completed = step_completed(context, produced)
                    except Exception as exc:
                        error = StepError.from_exception(exc)
                        self._record_failure(context, error, exc)
                        raise
                    self._record(completed)  # critical (seed 004 §5): if it raises, the step failed
                    outcome = produced
        except BaseException as exc:
            error = error or StepError.from_exception(exc)
            raise
        finally:
            result = ExecutionResult(
                context=context,
                status=ExecutionStatus.COMPLETED if outcome is not None else ExecutionStatus.FAILED,
                outcome=outcome,
                started_at=started_at,
                completed_at=self._clock(),
                duration_ms=(time.perf_counter() - started) * 1000,
                suppressed=None if suppressed is None else dict(suppressed.counts),
                error=None if outcome is not None else error,
                replayed_from_seq=replayed_from,
            )
            run_log.log_end(out, result)
            self._notify(result)
        return result

    def _validated(
        self, context: ExecutionContext, out: logging.Logger
    ) -> tuple[ExecutionContext, PreparedWork]:
        """The context, validated again (``model_copy(update=...)`` and ``model_construct`` skip
        pydantic's validation), and its prepared work; nothing is written or logged but a
        rejection line."""
        try:
            if not isinstance(context, ExecutionContext):
                msg = (
                    f"execute takes an ExecutionContext (from build_context, handle_event or run_batch), "
                    f"got {type(context).__name__}"
                )
                raise InvalidContextError(msg)
            # Revalidated from its fields: a wrong value set by model_copy(update=...) only warns here.
            checked = build_context(**context.model_dump(warnings=False))
            return checked, self._work(checked).prepare(checked)
        except Exception as exc:
            work = getattr(context, "work", None)
            run_log.log_rejected(out, str(exc), work if isinstance(work, str) else None)
            raise

    def _work(self, context: ExecutionContext) -> Work:
        work = self._works.get(context.work)
        if work is None:
            known = ", ".join(self.work_names) or "none"
            hint = did_you_mean(context.work, self._works)
            msg = f"unknown work {context.work!r}{hint} (this engine runs: {known})"
            raise InvalidContextError(msg)
        return work

    def _prior_completion(self, context: ExecutionContext) -> StoredEvent | None:
        """The StepCompleted already recorded for this context's identity, if the recorder can look."""
        recorder = self._recorder
        if not isinstance(recorder, RecordLookup):
            return None
        return recorder.recorded(step_completed_probe(context))

    def _record(self, event: NewEvent) -> None:
        if self._recorder is not None:
            self._recorder.record(event)

    def _record_failure(self, context: ExecutionContext, error: StepError, exc: Exception) -> None:
        """Record StepFailed; if that fails too, the work's exception still wins, with a note."""
        try:
            self._record(step_failed(context, error))
        except Exception as record_exc:
            exc.add_note(f"recording StepFailed failed too: {type(record_exc).__name__}: {record_exc}")
            log.exception("could not record StepFailed for %s", context.label())

    def _notify(self, result: ExecutionResult) -> None:
        for observer in self._observers:
            try:
                observer(result)
            except Exception:
                # A trace hook must not turn a finished execution into a failed one.
                log.exception("an execution observer failed for %s", result.context.label())


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
