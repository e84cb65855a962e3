"""Run and step snapshots (seed 004 §1.4): immutable values and their JSON form, as stored in
``ledger_run_snapshots``. The fold that produces them is :mod:`metric_platform.ledger.projection`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from metric_platform.ledger.events import ArtifactRef, JSONValue

_JSON_VERSION = 1


class RunStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"

    @property
    def is_terminal(self) -> bool:
        return self in (StepStatus.SUCCESS, StepStatus.FAILED, StepStatus.SKIPPED)


@dataclass(frozen=True)
class ErrorInfo:
    """Seed 004 §1.4 ``error``: what a step (or the run) failed with."""

    code: str
    message: str
    retryable: bool

    def to_json(self) -> dict[str, JSONValue]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}

    @classmethod
    def from_json(cls, raw: Mapping[str, JSONValue]) -> ErrorInfo:
        return cls(str(raw["code"]), str(raw["message"]), bool(raw["retryable"]))


@dataclass(frozen=True)
class RootCause:
    """Why a run failed: the RunFailed event's error, or its earliest failed step's."""

    error: ErrorInfo
    step_id: str | None = None

    def to_json(self) -> dict[str, JSONValue]:
        return {"error": self.error.to_json(), "stepId": self.step_id}

    @classmethod
    def from_json(cls, raw: Mapping[str, JSONValue]) -> RootCause:
        step = raw.get("stepId")
        return cls(ErrorInfo.from_json(raw["error"]), None if step is None else str(step))


@dataclass(frozen=True)
class StepSnapshot:
    """Seed 004 §1.4 ``StepSnapshot`` for the step's current logical attempt."""

    step_id: str
    status: StepStatus
    logical_attempt_id: int
    engine_attempt_id: int | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    artifacts: tuple[ArtifactRef, ...] = ()
    error: ErrorInfo | None = None
    skip_reason: str | None = None

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "stepId": self.step_id,
            "status": self.status.value,
            "logicalAttemptId": self.logical_attempt_id,
            "engineAttemptId": self.engine_attempt_id,
            "startedAt": ts_out(self.started_at),
            "completedAt": ts_out(self.completed_at),
            "artifacts": [a.to_json() for a in self.artifacts],
            "error": None if self.error is None else self.error.to_json(),
            "skipReason": self.skip_reason,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, JSONValue]) -> StepSnapshot:
        error = raw.get("error")
        engine_attempt = raw.get("engineAttemptId")
        reason = raw.get("skipReason")
        return cls(
            step_id=str(raw["stepId"]),
            status=StepStatus(raw["status"]),
            logical_attempt_id=int(raw["logicalAttemptId"]),
            engine_attempt_id=None if engine_attempt is None else int(engine_attempt),
            started_at=ts_in(raw.get("startedAt")),
            completed_at=ts_in(raw.get("completedAt")),
            artifacts=tuple(ArtifactRef.from_json(a) for a in raw.get("artifacts") or ()),
            error=None if error is None else ErrorInfo.from_json(error),
            skip_reason=None if reason is None else str(reason),
        )


@dataclass(frozen=True)
class RunSnapshot:
    """Seed 004 §1.4 ``RunSnapshot``, plus what the fold needs to continue from it.

    ``run_attempt_id`` is the logical attempt of the run-level events in effect (0 before any);
    ``engine_run_ref`` is a read-only deep copy of the JSON (mapping proxies and tuples).
    """

    run_id: str
    status: RunStatus = RunStatus.PENDING
    last_event_seq: int = 0
    steps: tuple[StepSnapshot, ...] = ()
    artifacts: tuple[ArtifactRef, ...] = ()
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    total_duration_ms: int | None = None
    events_applied: int = 0
    failed_steps: int = 0
    engine_run_ref: Mapping[str, JSONValue] | None = None
    root_cause: RootCause | None = None
    run_attempt_id: int = 0

    @classmethod
    def initial(cls, run_id: str) -> RunSnapshot:
        """The snapshot before any event: PENDING, lastEventSeq 0."""
        return cls(run_id=run_id)

    def step(self, step_id: str) -> StepSnapshot | None:
        return next((s for s in self.steps if s.step_id == step_id), None)

    def to_json(self) -> dict[str, JSONValue]:
        """The seed's camelCase shape, stored in ``ledger_run_snapshots.snapshot``."""
        return {
            "v": _JSON_VERSION,
            "runId": self.run_id,
            "status": self.status.value,
            "lastEventSeq": self.last_event_seq,
            "steps": [s.to_json() for s in self.steps],
            "artifacts": [a.to_json() for a in self.artifacts],
            "startedAt": ts_out(self.started_at),
            "completedAt": ts_out(self.completed_at),
            "totalDurationMs": self.total_duration_ms,
            "eventsApplied": self.events_applied,
            "failedSteps": self.failed_steps,
            "engineRunRef": thaw_json(self.engine_run_ref),
            "rootCause": None if self.root_cause is None else self.root_cause.to_json(),
            "runAttemptId": self.run_attempt_id,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, JSONValue]) -> RunSnapshot:
        """Inverse of :meth:`to_json`; raises ``ValueError`` for anything else."""
        version = raw.get("v") if isinstance(raw, Mapping) else None
        if version != _JSON_VERSION:
            msg = f"run snapshot JSON version {version!r} is not {_JSON_VERSION}"
            raise ValueError(msg)
        try:
            duration = raw.get("totalDurationMs")
            ref = raw.get("engineRunRef")
            root = raw.get("rootCause")
            return cls(
                run_id=str(raw["runId"]),
                status=RunStatus(raw["status"]),
                last_event_seq=int(raw["lastEventSeq"]),
                steps=tuple(StepSnapshot.from_json(s) for s in raw["steps"]),
                artifacts=tuple(ArtifactRef.from_json(a) for a in raw["artifacts"]),
                started_at=ts_in(raw.get("startedAt")),
                completed_at=ts_in(raw.get("completedAt")),
                total_duration_ms=None if duration is None else int(duration),
                events_applied=int(raw["eventsApplied"]),
                failed_steps=int(raw["failedSteps"]),
                engine_run_ref=None if ref is None else freeze_json(ref),
                root_cause=None if root is None else RootCause.from_json(root),
                run_attempt_id=int(raw["runAttemptId"]),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            msg = f"malformed run snapshot JSON: {exc!r}"
            raise ValueError(msg) from exc


def freeze_json(value: JSONValue) -> JSONValue:
    """A read-only deep copy of a JSON value: objects become mapping proxies, arrays tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze_json(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze_json(v) for v in value)
    return value


def thaw_json(value: JSONValue) -> JSONValue:
    """The plain JSON value (dicts and lists) of a :func:`freeze_json` result."""
    if isinstance(value, Mapping):
        return {k: thaw_json(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw_json(v) for v in value]
    return value


def ts_out(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def ts_in(value: JSONValue) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(str(value))
