"""A :class:`NewEvent` as plain JSON and back, exactly: what the spool writes to disk.

Every field round-trips, the timestamp with its zone and the uuids as text, so a replayed event
is the event that was spooled: same identity, hence the same idempotency key, event id and data.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from metric_platform.errors import InternalError
from metric_platform.ledger.events import EventIdentity, EventType, JSONValue, NewEvent

FORMAT = "metric_platform.new_event/1"


class EventDecodeError(InternalError):
    """A JSON document is not a :class:`NewEvent` this version wrote; the message says what is wrong."""


def event_to_json(event: NewEvent) -> dict[str, JSONValue]:
    """The event as a JSON-serialisable dict (keyed by the seed's camelCase names)."""
    identity = event.identity
    return {
        "format": FORMAT,
        "idempotencyKey": event.idempotency_key,
        "runId": identity.run_id,
        "stepId": identity.step_id,
        "logicalAttemptId": identity.logical_attempt_id,
        "engineAttemptId": identity.engine_attempt_id,
        "planVersion": identity.plan_version,
        "eventType": event.event_type.value,
        "eventData": dict(event.data),
        "emittedAt": event.emitted_at.isoformat(),
        "adapterVersion": event.adapter_version,
        "engineRunRef": None if event.engine_run_ref is None else dict(event.engine_run_ref),
        "causedBySignalId": _uuid_text(event.caused_by_signal_id),
        "parentEventId": _uuid_text(event.parent_event_id),
    }


def event_from_json(raw: object) -> NewEvent:
    """The inverse of :func:`event_to_json`; raises :class:`EventDecodeError` for anything else,
    including a document whose fields no longer hash to its recorded idempotency key (edited)."""
    if not isinstance(raw, Mapping):
        msg = f"expected a JSON object, got {type(raw).__name__}"
        raise EventDecodeError(msg)
    if raw.get("format") != FORMAT:
        msg = f"format is {raw.get('format')!r}, expected {FORMAT!r}"
        raise EventDecodeError(msg)
    try:
        event = NewEvent(
            identity=EventIdentity(
                run_id=_typed(raw, "runId", str),
                step_id=_typed(raw, "stepId", str),
                logical_attempt_id=_int(raw, "logicalAttemptId"),
                engine_attempt_id=_int(raw, "engineAttemptId"),
                plan_version=_typed(raw, "planVersion", str),
            ),
            event_type=EventType(_typed(raw, "eventType", str)),
            data=_typed(raw, "eventData", dict),
            emitted_at=_timestamp(_typed(raw, "emittedAt", str)),
            adapter_version=_typed(raw, "adapterVersion", str),
            engine_run_ref=_optional(raw, "engineRunRef", dict),
            caused_by_signal_id=_optional_uuid(raw, "causedBySignalId"),
            parent_event_id=_optional_uuid(raw, "parentEventId"),
        )
    except (KeyError, ValueError) as exc:
        msg = f"not a valid event: {exc}"
        raise EventDecodeError(msg) from exc
    if raw.get("idempotencyKey") != event.idempotency_key:
        msg = (
            f"its fields hash to idempotency key {event.idempotency_key}, not the recorded "
            f"{raw.get('idempotencyKey')!r}: the document was edited"
        )
        raise EventDecodeError(msg)
    return event


def _typed(raw: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    if name not in raw:
        msg = f"field {name!r} is missing"
        raise EventDecodeError(msg)
    value = raw[name]
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        msg = f"field {name!r} should be {kind.__name__}, not {type(value).__name__}"
        raise EventDecodeError(msg)
    return value


def _int(raw: Mapping[str, Any], name: str) -> int:
    value: int = _typed(raw, name, int)
    return value


def _optional(raw: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    return None if raw.get(name) is None else _typed(raw, name, kind)


def _optional_uuid(raw: Mapping[str, Any], name: str) -> uuid.UUID | None:
    text = _optional(raw, name, str)
    return None if text is None else uuid.UUID(text)


def _timestamp(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        msg = f"emittedAt {text!r} has no time zone"
        raise EventDecodeError(msg)
    return value


def _uuid_text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)
