"""Fixtures of the scaffold tests: an in-memory recorder, small works, and context factories."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from metric_platform import write_guard
from metric_platform.execution.context import ExecutionContext, InvalidContextError, build_context
from metric_platform.execution.work import PreparedWork, WorkOutcome
from metric_platform.ledger.events import ArtifactRef, EventType, NewEvent

EXECUTION_TIME = dt.datetime(2026, 3, 2, 6, 30, tzinfo=dt.UTC)


class ConflictingEventError(Exception):
    """Two events with one idempotency key but different payloads (a real ledger refuses that)."""


@dataclass
class FakeRecorder:
    """A ledger in memory, keyed by idempotency key: appends once, deduplicates equal payloads,
    refuses a different payload under a known key, and writes nothing under a dry run (it asks
    the write guard, as the real recorder does)."""

    calls: list[NewEvent] = field(default_factory=list)
    stored: dict[str, NewEvent] = field(default_factory=dict)
    fail_on: frozenset[EventType] = frozenset()

    def record(self, event: NewEvent) -> str:
        self.calls.append(event)
        if event.event_type in self.fail_on:
            msg = f"the ledger is down: {event.event_type} not recorded"
            raise OSError(msg)
        if not write_guard.permit("ledger.append"):
            return "suppressed"
        known = self.stored.get(event.idempotency_key)
        if known is None:
            self.stored[event.idempotency_key] = event
            return "appended"
        if known.payload_text != event.payload_text:
            msg = f"{event.event_type} {event.idempotency_key} was recorded with another payload"
            raise ConflictingEventError(msg)
        return "duplicate"

    def types(self) -> list[EventType]:
        return [event.event_type for event in self.calls]


@dataclass
class _Run:
    work: EchoWork
    context: ExecutionContext

    def run(self) -> WorkOutcome:
        self.work.runs.append(self.context)
        self.work.dry_run_seen.append(write_guard.is_dry_run())
        write_guard.permit("test.write")  # what a work's own store would ask
        if self.work.fail_with:
            raise self.work.fail_with.pop(0)
        n = int(self.context.params.get("n", 1))
        artifact = ArtifactRef(
            uri=f"memory://{self.context.identity.step_id}", kind="test-output", size_bytes=n
        )
        return WorkOutcome(artifacts=(artifact,), summary={"n": n}, value=list(range(n)))


@dataclass
class EchoWork:
    """Validates ``params.n`` (a positive int, optional) and returns it; ``fail_with`` holds
    exceptions its next runs raise, one each."""

    name: str = "test.echo"
    prepared: list[ExecutionContext] = field(default_factory=list)
    runs: list[ExecutionContext] = field(default_factory=list)
    dry_run_seen: list[bool] = field(default_factory=list)
    fail_with: list[BaseException] = field(default_factory=list)

    def prepare(self, context: ExecutionContext) -> PreparedWork:
        self.prepared.append(context)
        unknown = sorted(set(context.params) - {"n"})
        if unknown:
            msg = f"work {self.name!r} takes the parameter n only, got {unknown}"
            raise InvalidContextError(msg)
        n = context.params.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            msg = f"work {self.name!r}: n must be a positive integer, got {n!r}"
            raise InvalidContextError(msg)
        return _Run(self, context)


def context_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "tenant_id": "acme",
        "execution_time": EXECUTION_TIME,
        "mode": "SCHEDULED",
        "trigger": "BATCH",
        "work": "test.echo",
        "scope": {"ac": "retail", "days": {"start": "2026-03-01", "end": "2026-03-01"}},
        "identity": {"run_id": "run-1", "step_id": "test.echo[2026-03-01]"},
        "params": {"n": 3},
    }
    fields.update(changes)
    return fields


def make_context(**changes: Any) -> ExecutionContext:
    return build_context(**context_fields(**changes))


@pytest.fixture
def recorder() -> FakeRecorder:
    return FakeRecorder()


@pytest.fixture
def work() -> EchoWork:
    return EchoWork()


@pytest.fixture
def guard_entries(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Each entry into ``write_guard.dry_run`` (its ``enabled`` flag), still entering it."""
    entered: list[bool] = []
    original: Callable[..., Any] = write_guard.dry_run

    def spy(enabled: bool = True) -> Any:
        entered.append(enabled)
        return original(enabled)

    monkeypatch.setattr(write_guard, "dry_run", spy)
    yield entered
