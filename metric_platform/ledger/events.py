"""Canonical run events (seed 004 §1.2-1.3): their types, identity, idempotency key and payload.

Pure data, no I/O. An event is identified, for deduplication, by
``SHA256(runId | stepId | logicalAttemptId | eventType | planVersion)``; ``engineAttemptId`` is
deliberately not part of it, so a platform retry of the same logical attempt (Dagster's step
retry) produces the same key and is deduplicated instead of recorded twice.

The key is computed over an unambiguous encoding: each field is written as a netstring
(``<byte length>:<utf-8 bytes>,``), so ``("a|b", "c")`` and ``("a", "b|c")`` — equal when joined
with ``|`` — give different keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

ADAPTER_VERSION = "metric_platform/1"
RUN_STEP = ""  # the stepId of run-level events (Run*)

JSONValue = Any  # a JSON-serialisable value (dict / list / str / int / float / bool / None)


class EventType(StrEnum):
    RUN_APPROVED = "RunApproved"
    RUN_STARTED = "RunStarted"
    STEP_STARTED = "StepStarted"
    STEP_COMPLETED = "StepCompleted"
    STEP_FAILED = "StepFailed"
    STEP_SKIPPED = "StepSkipped"
    SIGNAL_ACCEPTED = "SignalAccepted"
    SIGNAL_REJECTED = "SignalRejected"
    RUN_PAUSED = "RunPaused"
    RUN_RESUMED = "RunResumed"
    RUN_COMPLETED = "RunCompleted"
    RUN_FAILED = "RunFailed"
    RUN_CANCELLED = "RunCancelled"

    @property
    def is_step_event(self) -> bool:
        return self.value.startswith("Step")


# Seed 004 §5: a non-critical event may fail open to the local spool; a critical one fails the step.
FAIL_OPEN_EVENTS: frozenset[EventType] = frozenset({EventType.STEP_STARTED})
CRITICAL_EVENTS: frozenset[EventType] = frozenset({EventType.STEP_COMPLETED, EventType.STEP_FAILED})


@dataclass(frozen=True)
class ArtifactRef:
    """A pointer to an artifact (seed 004 §2): the ledger stores references, never payloads."""

    uri: str
    kind: str
    sha256: str | None = None
    size_bytes: int | None = None
    expires_at: dt.datetime | None = None

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {"uri": self.uri, "kind": self.kind}
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        if self.size_bytes is not None:
            out["sizeBytes"] = self.size_bytes
        if self.expires_at is not None:
            out["expiresAt"] = self.expires_at.isoformat()
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, JSONValue]) -> ArtifactRef:
        expires = raw.get("expiresAt")
        return cls(
            uri=str(raw["uri"]),
            kind=str(raw["kind"]),
            sha256=raw.get("sha256"),
            size_bytes=raw.get("sizeBytes"),
            expires_at=dt.datetime.fromisoformat(expires) if expires else None,
        )


@dataclass(frozen=True)
class EventIdentity:
    """Who emits an event, in seed 004 §1.3 terms (mapped from Dagster in ``defs/``).

    ``run_id`` the Dagster root run id (re-executions share it); ``step_id`` the step key plus the
    partition range; ``logical_attempt_id`` the position in the re-execution chain or a policy
    retry (business level, part of the key); ``engine_attempt_id`` Dagster's ``retry_number``
    (platform level, not part of the key); ``plan_version`` the family/job fingerprint.
    """

    run_id: str
    step_id: str = RUN_STEP
    logical_attempt_id: int = 1
    engine_attempt_id: int = 0
    plan_version: str = ""


def idempotency_key(
    run_id: str, step_id: str, logical_attempt_id: int, event_type: EventType | str, plan_version: str
) -> str:
    """``SHA256(runId | stepId | logicalAttemptId | eventType | planVersion)`` as 64 hex digits,
    over netstring-encoded fields (see the module docstring)."""
    digest = hashlib.sha256()
    for part in (run_id, step_id, str(logical_attempt_id), str(event_type), plan_version):
        raw = part.encode("utf-8")
        digest.update(b"%d:%s," % (len(raw), raw))
    return digest.hexdigest()


def canonical_json(value: JSONValue) -> str:
    """One text per JSON value (sorted keys, no spaces, no NaN): what payload comparisons use."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# Parts of an event's data that describe how an outcome came about rather than the outcome: a
# re-execution or platform retry of the same logical attempt may report them differently (a
# second serve hits memory where the first called the backend; a retried step fails with another
# message) without contradicting the first record, which stays the one the ledger keeps.
_DESCRIPTIVE: dict[EventType, frozenset[str]] = {
    EventType.STEP_COMPLETED: frozenset({"summary"}),
    # One logical attempt fails once: a platform retry failing again, with whatever error, is
    # the same failure (the first error stays the recorded one).
    EventType.STEP_FAILED: frozenset({"error"}),
    EventType.RUN_FAILED: frozenset({"rootCause"}),
    EventType.RUN_CANCELLED: frozenset({"rootCause"}),
}


def semantic_payload(event_type: EventType | str, data: Mapping[str, JSONValue]) -> str:
    """What two appends with one idempotency key must agree on, as canonical JSON: ``data`` without
    its descriptive parts (a StepCompleted's ``summary``, a StepFailed's ``error``, a Run*
    ``rootCause``). Attempt ids and timestamps are never in ``data``."""
    kind = EventType(event_type)
    kept: dict[str, JSONValue] = {k: v for k, v in data.items() if k not in _DESCRIPTIVE.get(kind, ())}
    return canonical_json(kept)


@dataclass(frozen=True)
class NewEvent:
    """An event to append. ``data`` is its semantic payload: two appends with one idempotency key
    must carry the same ``data`` (attempt ids and timestamps live outside it), else they conflict."""

    identity: EventIdentity
    event_type: EventType
    data: Mapping[str, JSONValue] = field(default_factory=dict)
    emitted_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    adapter_version: str = ADAPTER_VERSION
    engine_run_ref: Mapping[str, JSONValue] | None = None
    caused_by_signal_id: uuid.UUID | None = None
    parent_event_id: uuid.UUID | None = None

    @property
    def idempotency_key(self) -> str:
        i = self.identity
        return idempotency_key(i.run_id, i.step_id, i.logical_attempt_id, self.event_type, i.plan_version)

    @property
    def event_id(self) -> uuid.UUID:
        """Derived from the key: a deduplicated retry names the original event."""
        return uuid.UUID(hex=self.idempotency_key[:32], version=4)

    @property
    def payload_text(self) -> str:
        """The canonical text of the semantic part of ``data`` (see :func:`semantic_payload`)."""
        canonical_json(dict(self.data))  # the whole of data must be JSON, not just what is compared
        return semantic_payload(self.event_type, self.data)


@dataclass(frozen=True)
class StoredEvent:
    """An event as persisted: the appended event plus what the store assigned."""

    event: NewEvent
    run_seq: int
    position: int
    persisted_at: dt.datetime

    @property
    def run_id(self) -> str:
        return self.event.identity.run_id

    @property
    def event_type(self) -> EventType:
        return self.event.event_type

    @property
    def event_id(self) -> uuid.UUID:
        return self.event.event_id
