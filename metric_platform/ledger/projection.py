"""The snapshot projection (seed 004 §1.4-1.5): a pure left fold of a run's events into a snapshot.

No I/O. ``project_run(run_id, events)`` folds a whole log; ``incremental_project(snapshot, events)``
continues from a snapshot; both return a new :class:`RunSnapshot` and never change their inputs.
Folding ``events[:k]`` and then ``events[k:]`` gives exactly the fold of ``events``, because every
piece of state the fold reads lives in the snapshot (and survives its JSON round trip).

Ordering (rules 1-2, 4). Events are consumed in ``runSeq`` order from ``last_event_seq + 1``.
An event with ``run_seq <= last_event_seq`` was applied already and is ignored, so re-applying
(after a crash, or a re-read) is a no-op. Any other event that is not exactly the next seq is a
gap: :func:`incremental_project` raises :class:`ProjectionGapError` and the caller halts the run;
:func:`split_at_gap` gives the applicable prefix. ``events_applied`` counts folded events.

Reduction (rule 3), per *subject* — the run, or one step. Each subject has a current logical
attempt (seed §1.3); an event of an OLDER logical attempt is stale and changes nothing (it is still
counted). An event of a NEWER attempt starts that attempt afresh: for a step, status, times,
artifacts and error are reset to what the event says; for the run (a re-execution, which shares
the root run id), completion time, duration, artifacts and root cause are cleared, and a finished
run starts over from PENDING.

- ``RunApproved`` → APPROVED, only from PENDING (a late approval does not undo a start).
- ``RunStarted`` → RUNNING from PENDING/APPROVED/RUNNING; ``engineRunRef`` set; ``startedAt`` is
  the earliest RunStarted seen, so ``totalDurationMs`` spans every attempt of the run.
- ``RunPaused`` → PAUSED, ``RunResumed`` → RUNNING, unless the run is terminal.
- ``RunCompleted`` → COMPLETED and aggregates artifacts: its own ``data.artifacts`` then each
  SUCCESS step's artifacts in step order, first occurrence of a (uri, kind) kept; a step completed
  later (a late event) adds its artifacts too.
- ``RunFailed`` → FAILED with a root cause: ``data.error`` (or ``data.rootCause``), else the
  earliest failure among the steps now FAILED.
- ``RunCancelled`` → CANCELLED.
- Terminal run events of the current attempt apply in seq order (the latest wins); COMPLETED,
  FAILED and CANCELLED are never regressed by non-terminal run events of the same attempt nor by
  any step event. A late RunStarted may still fill ``startedAt`` and ``engineRunRef``.
- ``StepStarted`` → the step RUNNING. A StepStarted persisted after its step's
  StepCompleted/StepFailed/StepSkipped of the same or a higher logical attempt (it is the one
  event that may fail open to the spool and arrive late, seed §5) keeps the terminal status and
  only fills a missing ``startedAt``; one of a newer attempt resets the step to RUNNING.
- ``StepCompleted`` → SUCCESS with ``data.artifacts``; ``StepFailed`` → FAILED with ``data.error``
  ({code, message, retryable}) and ``failedSteps`` + 1 (a counter of failed attempts, never
  decremented; the steps failed *now* are those with status FAILED); ``StepSkipped`` → SKIPPED with
  ``data.reason``. Within one logical attempt the latest outcome wins (a platform retry that
  succeeds after a failure reads SUCCESS).
- ``SignalAccepted`` / ``SignalRejected`` change no status.

Times are the events' ``emitted_at`` (when it happened), not ``persisted_at``: a spooled event is
persisted late. Durations are clamped at 0 against clock skew. Payloads are parsed leniently — a
malformed artifact is dropped, a malformed error becomes code ``UNSPECIFIED`` — so one bad event
cannot stop a run's projection forever.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, assert_never

from metric_platform.errors import InternalError
from metric_platform.ledger.events import ArtifactRef, EventType, JSONValue, StoredEvent
from metric_platform.ledger.snapshot import (
    ErrorInfo,
    RootCause,
    RunSnapshot,
    RunStatus,
    StepSnapshot,
    StepStatus,
    freeze_json,
)

__all__ = [
    "ErrorInfo",
    "Gap",
    "GapCheck",
    "ProjectionGapError",
    "RootCause",
    "RunSnapshot",
    "RunStatus",
    "Split",
    "StepSnapshot",
    "StepStatus",
    "detect_gaps",
    "incremental_project",
    "project_run",
    "split_at_gap",
]


class ProjectionGapError(InternalError):
    """The next event of a run is missing (seed 004 §1.5 rule 1): the run must halt, not skip."""

    def __init__(self, run_id: str, expected: int, found: int) -> None:
        self.run_id = run_id
        self.expected = expected
        self.found = found
        super().__init__(
            f"run {run_id!r}: expected runSeq {expected}, got {found}; events are never skipped, "
            "so the run's projection halts until the missing event is stored"
        )


@dataclass(frozen=True)
class GapCheck:
    has_gap: bool
    expected: int


@dataclass(frozen=True)
class Gap:
    expected: int
    found: int


@dataclass(frozen=True)
class Split:
    """The events that can be applied now (in order), and the gap that stops the rest, if any."""

    ready: tuple[StoredEvent, ...]
    gap: Gap | None


def detect_gaps(last_seq: int, next_seq: int) -> GapCheck:
    """Is ``next_seq`` more than one past ``last_seq``? (A seq at or below it is a re-read, not a gap.)"""
    return GapCheck(has_gap=next_seq > last_seq + 1, expected=last_seq + 1)


def split_at_gap(last_seq: int, events: Iterable[StoredEvent]) -> Split:
    """Drop events at or below ``last_seq`` and keep the run of consecutive seqs that follows it."""
    ready: list[StoredEvent] = []
    expected = last_seq + 1
    for event in sorted(events, key=lambda e: e.run_seq):
        if event.run_seq < expected:
            continue  # already applied (or a duplicate row in the input)
        if event.run_seq > expected:
            return Split(tuple(ready), Gap(expected=expected, found=event.run_seq))
        ready.append(event)
        expected += 1
    return Split(tuple(ready), None)


def project_run(run_id: str, events: Iterable[StoredEvent]) -> RunSnapshot:
    """The snapshot of ``run_id`` from its whole log (which must start at runSeq 1)."""
    return incremental_project(RunSnapshot.initial(run_id), events)


def incremental_project(snapshot: RunSnapshot, new_events: Iterable[StoredEvent]) -> RunSnapshot:
    """``snapshot`` advanced by ``new_events``; raises :class:`ProjectionGapError` on a gap."""
    events = list(new_events)
    for event in events:
        if event.run_id != snapshot.run_id:
            msg = (
                f"event {event.event_id} of run {event.run_id!r} was given to the projection of "
                f"run {snapshot.run_id!r}; group events by run before projecting"
            )
            raise InternalError(msg)
    split = split_at_gap(snapshot.last_event_seq, events)
    if split.gap is not None:
        raise ProjectionGapError(snapshot.run_id, split.gap.expected, split.gap.found)
    if not split.ready:
        return replace(snapshot)  # a new object every time (seed §1.5 rule 2)
    fold = _Fold(snapshot)
    for event in split.ready:
        fold.apply(event)
    return fold.result()


class _Fold:
    """Mutable scratch state for one call; the snapshots it reads and returns are never changed."""

    def __init__(self, start: RunSnapshot) -> None:
        self.snap = start
        self.steps: dict[str, StepSnapshot] = {s.step_id: s for s in start.steps}

    def result(self) -> RunSnapshot:
        steps = tuple(self.steps[k] for k in sorted(self.steps))
        return replace(self.snap, steps=steps)

    def apply(self, event: StoredEvent) -> None:
        kind = event.event_type
        self.snap = replace(
            self.snap,
            last_event_seq=event.run_seq,
            events_applied=self.snap.events_applied + 1,
        )
        if kind in (
            EventType.STEP_STARTED,
            EventType.STEP_COMPLETED,
            EventType.STEP_FAILED,
            EventType.STEP_SKIPPED,
        ):
            self._apply_step(event)
        elif kind in (EventType.SIGNAL_ACCEPTED, EventType.SIGNAL_REJECTED):
            pass  # recorded in the log; no status changes (seed §1.2)
        elif kind in (
            EventType.RUN_APPROVED,
            EventType.RUN_STARTED,
            EventType.RUN_PAUSED,
            EventType.RUN_RESUMED,
            EventType.RUN_COMPLETED,
            EventType.RUN_FAILED,
            EventType.RUN_CANCELLED,
        ):
            self._apply_run(event)
        else:
            assert_never(kind)

    # -- steps ---------------------------------------------------------------------------------

    def _apply_step(self, event: StoredEvent) -> None:
        identity = event.event.identity
        attempt = identity.logical_attempt_id
        at = event.event.emitted_at
        data = event.event.data
        kind = event.event_type
        current = self.steps.get(identity.step_id)
        if kind is EventType.STEP_FAILED:
            self.snap = replace(self.snap, failed_steps=self.snap.failed_steps + 1)
        if current is not None and attempt < current.logical_attempt_id:
            return  # a stale attempt's report
        fresh = current is None or attempt > current.logical_attempt_id
        base = (
            StepSnapshot(identity.step_id, StepStatus.PENDING, attempt, identity.engine_attempt_id)
            if fresh or current is None
            else current
        )
        if kind is EventType.STEP_STARTED:
            if base.status.is_terminal:
                # Late non-critical event: keep the outcome, fill the start time only.
                step = base if base.started_at is not None else replace(base, started_at=at)
            else:
                step = replace(
                    base,
                    status=StepStatus.RUNNING,
                    engine_attempt_id=identity.engine_attempt_id,
                    started_at=base.started_at if base.started_at is not None else at,
                )
        else:
            step = replace(
                base,
                engine_attempt_id=identity.engine_attempt_id,
                completed_at=at,
                artifacts=_artifacts(data) if kind is EventType.STEP_COMPLETED else (),
                error=_error(data) if kind is EventType.STEP_FAILED else None,
                skip_reason=_text(data.get("reason")) if kind is EventType.STEP_SKIPPED else None,
                status=_STEP_OUTCOME[kind],
            )
        self.steps[identity.step_id] = step
        if step.status is StepStatus.SUCCESS and self.snap.status is RunStatus.COMPLETED:
            self.snap = replace(self.snap, artifacts=_dedupe((*self.snap.artifacts, *step.artifacts)))

    # -- the run -------------------------------------------------------------------------------

    def _apply_run(self, event: StoredEvent) -> None:
        attempt = event.event.identity.logical_attempt_id
        at = event.event.emitted_at
        kind = event.event_type
        snap = self.snap
        if attempt < snap.run_attempt_id:
            return  # a stale attempt's report
        if attempt > snap.run_attempt_id:
            snap = replace(
                snap,
                run_attempt_id=attempt,
                completed_at=None,
                total_duration_ms=None,
                artifacts=(),
                root_cause=None,
            )
            # A re-execution of a finished run starts over from PENDING.
            if snap.status.is_terminal:
                snap = replace(snap, status=RunStatus.PENDING)
        status = snap.status
        if kind is EventType.RUN_APPROVED:
            if status is RunStatus.PENDING:
                snap = replace(snap, status=RunStatus.APPROVED)
        elif kind is EventType.RUN_STARTED:
            started = at if snap.started_at is None else min(snap.started_at, at)
            ref = event.event.engine_run_ref
            snap = replace(snap, started_at=started)
            if ref is not None:
                snap = replace(snap, engine_run_ref=freeze_json(dict(ref)))
            if status in (RunStatus.PENDING, RunStatus.APPROVED, RunStatus.RUNNING):
                snap = replace(snap, status=RunStatus.RUNNING)
            elif status.is_terminal:
                snap = replace(snap, total_duration_ms=_duration(snap.started_at, snap.completed_at))
        elif kind in (EventType.RUN_PAUSED, EventType.RUN_RESUMED):
            if not status.is_terminal:
                paused = kind is EventType.RUN_PAUSED
                snap = replace(snap, status=RunStatus.PAUSED if paused else RunStatus.RUNNING)
        else:
            snap = self._terminal(snap, event)
        self.snap = snap

    def _terminal(self, snap: RunSnapshot, event: StoredEvent) -> RunSnapshot:
        kind = event.event_type
        at = event.event.emitted_at
        data = event.event.data
        artifacts: tuple[ArtifactRef, ...] = ()
        root: RootCause | None = None
        if kind is EventType.RUN_COMPLETED:
            status = RunStatus.COMPLETED
            ordered = sorted(self.steps.values(), key=lambda s: s.step_id)
            done = [a for s in ordered if s.status is StepStatus.SUCCESS for a in s.artifacts]
            artifacts = _dedupe((*_artifacts(data), *done))
        elif kind is EventType.RUN_FAILED:
            status = RunStatus.FAILED
            root = self._root_cause(data)
        elif kind is EventType.RUN_CANCELLED:
            status = RunStatus.CANCELLED
        else:  # pragma: no cover - _apply_run routes only terminal kinds here
            msg = f"{kind} is not a terminal run event"
            raise InternalError(msg)
        return replace(
            snap,
            status=status,
            completed_at=at,
            total_duration_ms=_duration(snap.started_at, at),
            artifacts=artifacts,
            root_cause=root,
        )

    def _root_cause(self, data: Mapping[str, JSONValue]) -> RootCause | None:
        raw = data.get("error", data.get("rootCause"))
        if raw is not None:
            step = data.get("stepId")
            return RootCause(_coerce_error(raw), step if isinstance(step, str) else None)
        failed = [s for s in self.steps.values() if s.status is StepStatus.FAILED and s.error is not None]
        if not failed:
            return None
        first = min(failed, key=_failure_order)
        assert first.error is not None
        return RootCause(first.error, first.step_id)


_STEP_OUTCOME = {
    EventType.STEP_COMPLETED: StepStatus.SUCCESS,
    EventType.STEP_FAILED: StepStatus.FAILED,
    EventType.STEP_SKIPPED: StepStatus.SKIPPED,
}


def _failure_order(step: StepSnapshot) -> tuple[bool, float, str]:
    # Known completion times first (earliest wins; naive read as UTC), then by step id.
    at = step.completed_at
    if at is None:
        return (True, 0.0, step.step_id)
    return (False, (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).timestamp(), step.step_id)


def _duration(start: dt.datetime | None, end: dt.datetime | None) -> int | None:
    if start is None or end is None:
        return None
    try:
        return max(0, (end - start) // dt.timedelta(milliseconds=1))
    except TypeError:  # one naive, one aware timestamp: no meaningful duration
        return None


def _dedupe(artifacts: Iterable[ArtifactRef]) -> tuple[ArtifactRef, ...]:
    seen: set[tuple[str, str]] = set()
    out: list[ArtifactRef] = []
    for artifact in artifacts:
        key = (artifact.uri, artifact.kind)
        if key not in seen:
            seen.add(key)
            out.append(artifact)
    return tuple(out)


def _artifacts(data: Mapping[str, JSONValue]) -> tuple[ArtifactRef, ...]:
    raw = data.get("artifacts")
    if not isinstance(raw, list):
        return ()
    out: list[ArtifactRef] = []
    for item in raw:
        parsed = _artifact(item)
        if parsed is not None:
            out.append(parsed)
    return _dedupe(out)


def _artifact(item: Any) -> ArtifactRef | None:
    if not isinstance(item, Mapping) or not isinstance(item.get("uri"), str):
        return None
    if not isinstance(item.get("kind"), str):
        return None
    sha = item.get("sha256")
    size = item.get("sizeBytes")
    try:
        ref = ArtifactRef.from_json(item)
    except (TypeError, ValueError):
        return None
    return replace(
        ref,
        sha256=sha if isinstance(sha, str) else None,
        size_bytes=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def _text(value: JSONValue) -> str | None:
    return value if isinstance(value, str) else None


def _error(data: Mapping[str, JSONValue]) -> ErrorInfo:
    return _coerce_error(data.get("error"))


def _coerce_error(raw: JSONValue) -> ErrorInfo:
    if isinstance(raw, Mapping):
        code = raw.get("code")
        message = raw.get("message")
        retryable = raw.get("retryable")
        return ErrorInfo(
            code=code if isinstance(code, str) and code else "UNSPECIFIED",
            message=message if isinstance(message, str) else "",
            retryable=retryable if isinstance(retryable, bool) else False,
        )
    if isinstance(raw, str):
        return ErrorInfo(code="UNSPECIFIED", message=raw, retryable=False)
    return ErrorInfo(code="UNSPECIFIED", message="", retryable=False)
