"""The seam between the neutral scaffold and what it runs (seed 000 §8, AC-5).

The scaffold never names a metric: callers hand :class:`~metric_platform.execution.engine.
MetricExecutionEngine` a set of :class:`Work` objects, and a context picks one by name. A work
validates its own parameters and scope in :meth:`Work.prepare` (no side effects: validation
failures are :class:`~metric_platform.execution.context.InvalidContextError`) and returns a
:class:`PreparedWork` whose :meth:`PreparedWork.run` does the computing and writing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from metric_platform.execution.context import ExecutionContext
from metric_platform.ledger.events import ArtifactRef, JSONValue


@dataclass(frozen=True)
class WorkOutcome:
    """What a work produced: references to its artifacts (never payloads: seed 004 §2), a small
    JSON summary for the ledger and the logs, and ``value`` for the in-process caller (a served
    frame for the CLI, a report for Dagster metadata); ``value`` is never persisted."""

    artifacts: tuple[ArtifactRef, ...] = ()
    summary: Mapping[str, JSONValue] = field(default_factory=dict)
    value: object = None


class PreparedWork(Protocol):
    def run(self) -> WorkOutcome: ...


class Work(Protocol):
    @property
    def name(self) -> str: ...

    def prepare(self, context: ExecutionContext) -> PreparedWork: ...
