"""The step events one execution emits (seed 004 §1.2), and the port that records them.

``execute`` emits StepStarted, then StepCompleted or StepFailed, all with the context's ledger
identity. Only context-determined fields go into an event's ``data``: a platform retry of the
same logical attempt (Dagster's step retry, ``engine_attempt_id`` + 1) builds an event with the
same idempotency key, and the ledger deduplicates it only when the payload is the same too. So no
clock readings, attempt ids or correlation ids in ``data``; those live in the event's envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from metric_platform.errors import InternalError
from metric_platform.execution.context import ExecutionContext
from metric_platform.execution.results import StepError
from metric_platform.execution.work import WorkOutcome
from metric_platform.ledger.events import (
    ArtifactRef,
    EventType,
    JSONValue,
    NewEvent,
    StoredEvent,
    canonical_json,
)


class EventRecorder(Protocol):
    """Where step events go (the ledger's recorder satisfies it).

    ``record`` appends an event idempotently and returns what it did; it decides itself whether a
    failure fails open (StepStarted: spooled) or raises (StepCompleted, StepFailed: seed 004 §5),
    and under a dry run it writes nothing (it asks ``write_guard.permit``).
    """

    def record(self, event: NewEvent) -> object: ...


def step_started(context: ExecutionContext) -> NewEvent:
    data: dict[str, JSONValue] = {
        "work": context.work,
        "tenant_id": context.tenant_id,
        "scope": context.scope.label(),
        "mode": context.mode.value,
        "trigger": context.trigger.value,
        "dry_run": context.dry_run,
    }
    return _event(context, EventType.STEP_STARTED, data)


def step_completed(context: ExecutionContext, outcome: WorkOutcome) -> NewEvent:
    """StepCompleted with the outcome's artifact references and summary (never its value).

    An outcome the ledger cannot store (not a WorkOutcome, a summary that is not JSON) is an
    InternalError here, before anything is recorded, so the step is recorded as failed instead.
    """
    if not isinstance(outcome, WorkOutcome):
        msg = (
            f"work {context.work!r} returned {type(outcome).__name__} from run(); "
            "return a metric_platform.execution.work.WorkOutcome"
        )
        raise InternalError(msg)
    for artifact in outcome.artifacts:
        if not isinstance(artifact, ArtifactRef):
            msg = f"work {context.work!r} listed {artifact!r} as an artifact; list ArtifactRef values"
            raise InternalError(msg)
    summary = dict(outcome.summary)
    try:
        canonical_json(summary)
    except (TypeError, ValueError) as exc:
        msg = f"work {context.work!r} returned a summary that is not plain JSON ({exc}); keep it plain"
        raise InternalError(msg) from exc
    data: dict[str, JSONValue] = {
        "artifacts": [artifact.to_json() for artifact in outcome.artifacts],
        "summary": summary,
    }
    return _event(context, EventType.STEP_COMPLETED, data)


@runtime_checkable
class RecordLookup(Protocol):
    """A recorder that can also say whether an event's idempotency key is recorded already."""

    def recorded(self, event: NewEvent) -> StoredEvent | None: ...


def step_completed_probe(context: ExecutionContext) -> NewEvent:
    """An event with the identity (hence the key) of this context's StepCompleted."""
    return _event(context, EventType.STEP_COMPLETED, {})


def recorded_outcome(event: StoredEvent) -> WorkOutcome:
    """The outcome a recorded StepCompleted describes (its value is not recorded: seed 004 §2)."""
    data = event.event.data
    raw = data.get("artifacts")
    artifacts = (
        tuple(ArtifactRef.from_json(a) for a in raw if isinstance(a, Mapping))
        if isinstance(raw, list)
        else ()
    )
    summary = data.get("summary")
    return WorkOutcome(artifacts, dict(summary) if isinstance(summary, Mapping) else {}, None)


def step_failed(context: ExecutionContext, error: StepError) -> NewEvent:
    return _event(context, EventType.STEP_FAILED, {"error": error.to_json()})


def _event(context: ExecutionContext, event_type: EventType, data: dict[str, JSONValue]) -> NewEvent:
    return NewEvent(identity=context.identity.event_identity(), event_type=event_type, data=data)
