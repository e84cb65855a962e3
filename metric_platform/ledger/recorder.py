"""Recording run events under the write-latency budget (seed 004 §5).

Every append is bounded by ``budget_ms`` (the database's lock and statement timeouts, see
:func:`metric_platform.db.write_transaction`). When the ledger cannot take an event in time:

- a non-critical event (``FAIL_OPEN_EVENTS``: StepStarted) fails open: it is spooled to local disk
  (:class:`~metric_platform.ledger.spool.Spool`), a warning is logged and the step carries on;
  :meth:`LedgerRecorder.replay_spool` appends it later;
- a critical event (StepCompleted, StepFailed) and every other type raise
  :class:`LedgerWriteError`: a step whose outcome is not recorded must fail, not succeed silently.

An append that *committed* but took longer than the budget (a slow commit the timeouts do not
cover) is recorded, and only logged as over budget: failing the step then would contradict the
ledger, which already holds its outcome, and a retried step would find the outcome a DUPLICATE.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Protocol, assert_never, runtime_checkable

from metric_platform import write_guard
from metric_platform.errors import InternalError, InvalidRequestError, StorageError
from metric_platform.ledger.events import (
    FAIL_OPEN_EVENTS,
    RUN_STEP,
    EventIdentity,
    EventType,
    JSONValue,
    NewEvent,
    StoredEvent,
)
from metric_platform.ledger.spool import EventAppender, ReplayReport, Spool
from metric_platform.ledger.store import AppendOutcome

_LOG = logging.getLogger(__name__)

# The run statuses a run-status sensor reports, each at most once per run (hence a fixed key).
# RunPaused/RunResumed may repeat within a run, so they do not belong here.
RUN_STATUS_EVENTS: frozenset[EventType] = frozenset(
    {EventType.RUN_STARTED, EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED}
)


@runtime_checkable
class _Lookup(Protocol):
    def get(self, run_id: str, idempotency_key: str) -> StoredEvent | None: ...


class RecordOutcome(StrEnum):
    APPENDED = "appended"  # in the ledger now
    DUPLICATE = "duplicate"  # was already in the ledger (a retry, a sensor firing twice)
    SPOOLED = "spooled"  # failed open: on local disk until the spool is replayed
    SUPPRESSED = "suppressed"  # dry run: nothing written anywhere


class LedgerWriteError(InternalError):
    """An event that must not fail open could not be recorded within the write budget."""


class LedgerRecorder:
    """Appends events to ``store`` within ``budget_ms``, failing open to ``spool`` where allowed."""

    def __init__(
        self,
        store: EventAppender,
        spool: Spool,
        *,
        budget_ms: int = 3000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if budget_ms <= 0:
            msg = f"the ledger write budget must be positive, not {budget_ms} ms"
            raise InvalidRequestError(msg)
        self._store = store
        self._spool = spool
        self._budget_ms = budget_ms
        self._clock = clock

    @property
    def budget_ms(self) -> int:
        return self._budget_ms

    @property
    def spool(self) -> Spool:
        return self._spool

    def record(self, event: NewEvent) -> RecordOutcome:
        """Append ``event``; see the module docstring for what happens when that fails."""
        if not write_guard.permit("ledger.append"):
            return RecordOutcome.SUPPRESSED
        started = self._clock()
        try:
            result = self._store.append(event, timeout_ms=self._budget_ms)
        except StorageError as exc:
            return self._failed(event, exc)
        elapsed_ms = (self._clock() - started) * 1000.0
        if elapsed_ms > self._budget_ms:
            _LOG.warning(
                "ledger append of %s took %.0f ms, over the %d ms budget (recorded all the same)",
                _describe(event),
                elapsed_ms,
                self._budget_ms,
            )
        match result.outcome:
            case AppendOutcome.APPENDED:
                return RecordOutcome.APPENDED
            case AppendOutcome.DUPLICATE:
                return RecordOutcome.DUPLICATE
            case AppendOutcome.SUPPRESSED:
                return RecordOutcome.SUPPRESSED
            case unreachable:
                assert_never(unreachable)

    def recorded(self, event: NewEvent) -> StoredEvent | None:
        """The stored event with ``event``'s idempotency key, if any (a read: no budget, no spool).
        A ledger that cannot be read answers None: the step then runs, and its append decides."""
        if not isinstance(self._store, _Lookup):
            return None
        try:
            return self._store.get(event.identity.run_id, event.idempotency_key)
        except StorageError as exc:
            _LOG.warning(
                "ledger: could not look up %s of run %s: %s", event.event_type, event.identity.run_id, exc
            )
            return None

    def record_run_status(
        self,
        run_id: str,
        status: EventType,
        *,
        data: Mapping[str, JSONValue] | None = None,
        engine_run_ref: Mapping[str, JSONValue] | None = None,
        plan_version: str = "",
        logical_attempt_id: int = 1,
        emitted_at: dt.datetime | None = None,
    ) -> RecordOutcome:
        """Record a run-level status event (step_id ``RUN_STEP``) for a run-status sensor.

        Its key depends only on the run, the status and ``plan_version``, so a sensor that fires
        twice gets DUPLICATE the second time, provided ``data`` is the same: keep it deterministic
        (no timestamps; those belong in ``emitted_at``). A failure raises :class:`LedgerWriteError`;
        the sensor's next tick retries it.
        """
        if status not in RUN_STATUS_EVENTS:
            allowed = ", ".join(sorted(RUN_STATUS_EVENTS))
            msg = (
                f"record_run_status records one of {allowed}, not {status}; record other events with record()"
            )
            raise InvalidRequestError(msg)
        event = NewEvent(
            identity=EventIdentity(
                run_id=run_id,
                step_id=RUN_STEP,
                logical_attempt_id=logical_attempt_id,
                plan_version=plan_version,
            ),
            event_type=status,
            data=dict(data or {}),
            emitted_at=emitted_at or dt.datetime.now(dt.UTC),
            engine_run_ref=engine_run_ref,
        )
        return self.record(event)

    def replay_spool(self) -> ReplayReport:
        """Append the events that failed open earlier (each append within the budget)."""
        return self._spool.replay(self._store, timeout_ms=self._budget_ms)

    def _failed(self, event: NewEvent, exc: StorageError) -> RecordOutcome:
        what = _describe(event)
        if event.event_type in FAIL_OPEN_EVENTS:
            try:
                path = self._spool.put(event)
            except StorageError as spool_exc:
                msg = (
                    f"{what} could not be recorded: the ledger failed ({exc}) and so did the local "
                    f"spool ({spool_exc}). Fix the platform database or free space in "
                    f"{self._spool.directory}, then retry the step."
                )
                raise LedgerWriteError(msg) from spool_exc
            if path is None:
                return RecordOutcome.SUPPRESSED
            _LOG.warning(
                "ledger unavailable within the %d ms budget; %s spooled to %s for a later replay: %s",
                self._budget_ms,
                what,
                path,
                exc,
            )
            return RecordOutcome.SPOOLED
        if event.event_type.is_step_event:
            consequence = "the step fails because its outcome could not be recorded"
        else:
            consequence = "it was not recorded and must be retried"
        msg = (
            f"{what} was not recorded in the ledger within the {self._budget_ms} ms write budget "
            f"(seed 004 §5), so {consequence}: {exc}. Check that the platform database is reachable "
            "and not locked, then retry."
        )
        raise LedgerWriteError(msg) from exc


def _describe(event: NewEvent) -> str:
    identity = event.identity
    step = f" step {identity.step_id!r}" if identity.step_id != RUN_STEP else ""
    return (
        f"{event.event_type} of run {identity.run_id!r}{step} (logical attempt {identity.logical_attempt_id})"
    )
