"""Errors the ledger raises on purpose."""

from __future__ import annotations

from metric_platform.errors import InternalError

_SHOWN = 300  # characters of each payload quoted in a message


class LedgerConflictError(InternalError):
    """Two appends with one idempotency key carried different ``data``.

    One identity (run, step, logical attempt, event type, plan version) must always describe the
    same fact; a different payload under it is a bug in the emitter (a payload that depends on a
    clock or an attempt number, or a logical attempt that should have been incremented), never
    something to record silently.
    """

    def __init__(
        self,
        *,
        run_id: str,
        step_id: str,
        event_type: str,
        idempotency_key: str,
        stored_payload: str,
        new_payload: str,
    ) -> None:
        self.run_id = run_id
        self.step_id = step_id
        self.event_type = event_type
        self.idempotency_key = idempotency_key
        self.stored_payload = stored_payload
        self.new_payload = new_payload
        msg = (
            f"ledger conflict in run {run_id!r}, step {step_id!r}, event {event_type}: idempotency key "
            f"{idempotency_key} is already recorded with data {_truncate(stored_payload)}, and this "
            f"append carries {_truncate(new_payload)}. An event's data must be a function of its "
            "identity only (no clock readings or attempt numbers in it); a genuinely new attempt needs "
            "a new logical_attempt_id."
        )
        super().__init__(msg)


def _truncate(text: str) -> str:
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} chars)"
