"""The execution context: one type for every way work is started (seed 000 §4, seed 001 §1).

Seed 000's scaffold and seed 001's alert ``ExecutionContext`` are one type family here:

- seed 001's fields are kept as they are: ``tenant_id``, ``execution_time``, ``dry_run``,
  ``mode`` (its ``executionMode``: MANUAL | SCHEDULED | TEST), ``correlation_id``,
  ``triggered_by``;
- seed 000's invocation source is ``trigger`` (EVENT | BATCH): *how* the context was built, which
  is independent of the mode (a sensor-launched job is EVENT + SCHEDULED; a backfill launched from
  the UI is BATCH + MANUAL);
- what runs is ``work`` (a name the caller supplied to the engine, never a metric: seed 000 §8)
  with its ``params``; where it runs is ``scope`` (the AC and a day range with a lookback);
- who records it is ``identity`` (seed 004 §1.3), the ledger identity of the step.

Contexts are frozen and validated on construction; :func:`build_context` turns pydantic's
errors into one :class:`InvalidContextError` that lists every problem.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from metric_platform.errors import UserError
from metric_platform.ledger.events import EventIdentity

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")


class InvalidContextError(UserError):
    """An execution context (or a work's parameters) is invalid; nothing was run or written."""


class ExecutionMode(StrEnum):
    """Seed 001 ``executionMode``: why the work runs."""

    MANUAL = "MANUAL"
    SCHEDULED = "SCHEDULED"
    TEST = "TEST"


class Trigger(StrEnum):
    """Seed 000 §4.2: which adapter built the context."""

    EVENT = "EVENT"
    BATCH = "BATCH"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class DayRange(_Frozen):
    """An inclusive range of event days (a Dagster partition range, or one day)."""

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> DayRange:
        if self.start > self.end:
            msg = f"the day range starts after it ends ({self.start} > {self.end}); swap the dates"
            raise ValueError(msg)
        return self

    def label(self) -> str:
        return self.start.isoformat() if self.start == self.end else f"{self.start}..{self.end}"


class Scope(_Frozen):
    """Where the work runs: one AC, optionally a day range, widened backwards by ``lookback_days``
    (see :mod:`metric_platform.execution.lookback`)."""

    ac: str = Field(min_length=1, max_length=255)
    days: DayRange | None = None
    lookback_days: int = Field(default=0, ge=0, le=3660)

    def label(self) -> str:
        parts = [f"ac={self.ac}"]
        if self.days is not None:
            parts.append(f"days={self.days.label()}")
        if self.lookback_days:
            parts.append(f"lookback={self.lookback_days}d")
        return " ".join(parts)


class RunIdentity(_Frozen):
    """The ledger identity of one step (seed 004 §1.3; the Dagster mapping is in ``defs/``)."""

    run_id: str = Field(min_length=1, max_length=255)
    step_id: str = Field(min_length=1, max_length=255)
    logical_attempt_id: int = Field(default=1, ge=1)
    engine_attempt_id: int = Field(default=0, ge=0)
    plan_version: str = Field(default="", max_length=255)

    def event_identity(self) -> EventIdentity:
        return EventIdentity(
            run_id=self.run_id,
            step_id=self.step_id,
            logical_attempt_id=self.logical_attempt_id,
            engine_attempt_id=self.engine_attempt_id,
            plan_version=self.plan_version,
        )


class ExecutionContext(_Frozen):
    """Everything ``MetricExecutionEngine.execute`` needs, and nothing about any metric."""

    tenant_id: str = Field(min_length=1, max_length=255)
    execution_time: AwareDatetime
    dry_run: bool = False
    mode: ExecutionMode
    trigger: Trigger
    work: str = Field(min_length=1, max_length=128)
    scope: Scope
    identity: RunIdentity
    params: Mapping[str, Any] = Field(default_factory=dict)
    correlation_id: str | None = Field(default=None, max_length=255)
    triggered_by: str | None = Field(default=None, max_length=255)

    @field_validator("work")
    @classmethod
    def _work_name(cls, value: str) -> str:
        if not _NAME.match(value):
            msg = f"work name {value!r} must be letters, digits and _ . : - (e.g. 'engine.serve')"
            raise ValueError(msg)
        return value

    @field_validator("execution_time")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        return value.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _manual_has_a_trigger(self) -> ExecutionContext:
        if self.mode is ExecutionMode.MANUAL and not self.triggered_by:
            msg = "a MANUAL execution names who triggered it (triggered_by)"
            raise ValueError(msg)
        return self

    def label(self) -> str:
        """The deterministic description used in start/end log lines (no clock readings)."""
        return (
            f"work={self.work} mode={self.mode.value} trigger={self.trigger.value} {self.scope.label()} "
            f"dry_run={str(self.dry_run).lower()} run={self.identity.run_id} step={self.identity.step_id} "
            f"attempt={self.identity.logical_attempt_id}"
        )


def build_context(**fields: Any) -> ExecutionContext:
    """Construct and validate a context; every problem is reported in one :class:`InvalidContextError`."""
    try:
        return ExecutionContext.model_validate(fields)
    except ValidationError as exc:
        raise InvalidContextError(describe_problems("execution context", exc)) from None


def describe_problems(what: str, exc: ValidationError) -> str:
    """``"invalid execution context: scope.days: ...; mode: ..."`` from a pydantic error."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        # pydantic prefixes the messages our validators raise with "Value error, ": noise to a user.
        problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return f"invalid {what}: " + "; ".join(problems)
