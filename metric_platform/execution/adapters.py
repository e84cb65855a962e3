"""The two ways work is started (seed 000 §4.2), both ending in the same ``execute`` (AC-1).

- The event adapter turns a domain event (an asset materialization, seen by a sensor) into a
  context: :func:`handle_event`. The context is a function of the event alone, so a redelivered
  event maps to the same ledger identity (run ``event:<event_id>``) and is deduplicated there.
- The batch adapter turns batch parameters (a partition range, a manual or scheduled run) into a
  context: :func:`run_batch`.

Adapters validate and translate; they compute nothing and know no metric. Bad input is an
:class:`InvalidContextError` listing every problem, raised before anything runs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from metric_platform.execution.context import (
    DayRange,
    ExecutionContext,
    ExecutionMode,
    InvalidContextError,
    Trigger,
    build_context,
    describe_problems,
)
from metric_platform.execution.engine import MetricExecutionEngine
from metric_platform.execution.lookback import parse_partition_key, range_from_partition_keys
from metric_platform.execution.results import ExecutionResult

_Model = TypeVar("_Model", bound=BaseModel)


class _Partitioned(BaseModel):
    """A payload naming an optional daily partition range (``partition_end`` needs a start)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partition_start: str | None = None
    partition_end: str | None = None

    @field_validator("partition_start", "partition_end")
    @classmethod
    def _partition_key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_partition_key(value)
            except InvalidContextError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.partition_start is None and self.partition_end is not None:
            msg = "partition_end is given without partition_start; give both, or partition_start alone"
            raise ValueError(msg)
        self.days()  # an inverted range fails here, with the keys named
        return self

    def days(self) -> DayRange | None:
        if self.partition_start is None:
            return None
        try:
            return range_from_partition_keys(self.partition_start, self.partition_end)
        except InvalidContextError as exc:
            raise ValueError(str(exc)) from None


class AssetMaterialized(_Partitioned):
    """A materialization of an asset (or a partition range of it) that should trigger work.

    ``asset_key`` is the Dagster key path; its first part is the AC (ARCHITECTURE.md §5: one asset
    group per AC). ``run_id`` is the run that materialized it; ``work`` and ``params`` say what
    the triggered job runs (from the sensor's configuration, never from the event's data).
    """

    event_id: str = Field(min_length=1, max_length=200)
    asset_key: tuple[str, ...] = Field(min_length=1)
    run_id: str = Field(min_length=1, max_length=255)
    tenant_id: str = Field(min_length=1, max_length=255)
    occurred_at: AwareDatetime
    plan_version: str = Field(default="", max_length=255)
    work: str = Field(min_length=1, max_length=128)
    params: Mapping[str, Any] = Field(default_factory=dict)
    lookback_days: int = Field(default=0, ge=0, le=3660)

    @field_validator("asset_key")
    @classmethod
    def _parts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not part for part in value):
            msg = f"asset_key {list(value)} has an empty part; every part names something"
            raise ValueError(msg)
        return value


DomainEvent = AssetMaterialized  # the one domain event that starts work today


class BatchParams(_Partitioned):
    """What a batch run (manual, scheduled or a test) asks for.

    ``partition_start``/``partition_end`` are daily partition keys (a range, or one partition
    alone; none for work over the whole AC). A MANUAL or TEST run gets a fresh ``run_id`` unless
    given one; a SCHEDULED run must name its orchestrator run id, so that re-running it is
    recognised. ``step_id`` defaults to ``<work>[<days>]``.
    """

    tenant_id: str = Field(min_length=1, max_length=255)
    ac: str = Field(min_length=1, max_length=255)
    work: str = Field(min_length=1, max_length=128)
    params: Mapping[str, Any] = Field(default_factory=dict)
    lookback_days: int = Field(default=0, ge=0, le=3660)
    mode: ExecutionMode = ExecutionMode.MANUAL
    triggered_by: str | None = Field(default=None, max_length=255)
    dry_run: bool = False
    run_id: str | None = Field(default=None, min_length=1, max_length=255)
    step_id: str | None = Field(default=None, min_length=1, max_length=255)
    logical_attempt_id: int = Field(default=1, ge=1)
    engine_attempt_id: int = Field(default=0, ge=0)
    plan_version: str = Field(default="", max_length=255)
    execution_time: AwareDatetime | None = None
    correlation_id: str | None = Field(default=None, max_length=255)

    @model_validator(mode="after")
    def _scheduled_run_id(self) -> Self:
        if self.mode is ExecutionMode.SCHEDULED and self.run_id is None:
            msg = "a SCHEDULED run names the orchestrator's run id (run_id), so a rerun maps to the same run"
            raise ValueError(msg)
        return self


def handle_event(
    event: DomainEvent | Mapping[str, Any], *, dry_run: bool = False, engine_attempt_id: int = 0
) -> ExecutionContext:
    """The context for a domain event: EVENT-triggered, SCHEDULED, run ``event:<event_id>``.

    ``execution_time`` is the event's ``occurred_at``, so the whole context follows from the
    event; ``engine_attempt_id`` is the platform's retry number of the job handling it.
    """
    payload = _parse(AssetMaterialized, event, "domain event")
    days = payload.days()
    return build_context(
        tenant_id=payload.tenant_id,
        execution_time=payload.occurred_at,
        dry_run=dry_run,
        mode=ExecutionMode.SCHEDULED,
        trigger=Trigger.EVENT,
        work=payload.work,
        scope={"ac": payload.asset_key[0], "days": days, "lookback_days": payload.lookback_days},
        identity={
            "run_id": f"event:{payload.event_id}",
            "step_id": _step_id(payload.work, days),
            "engine_attempt_id": engine_attempt_id,
            "plan_version": payload.plan_version,
        },
        params=dict(payload.params),
        correlation_id=payload.run_id,
        triggered_by=f"asset:{'/'.join(payload.asset_key)}",
    )


def run_batch(params: BatchParams | Mapping[str, Any], *, now: dt.datetime | None = None) -> ExecutionContext:
    """The context for a batch run: BATCH-triggered, in the parameters' mode.

    ``now`` is the execution time when the parameters give none (default: the current UTC time).
    """
    batch = _parse(BatchParams, params, "batch parameters")
    days = batch.days()
    return build_context(
        tenant_id=batch.tenant_id,
        execution_time=batch.execution_time or now or dt.datetime.now(dt.UTC),
        dry_run=batch.dry_run,
        mode=batch.mode,
        trigger=Trigger.BATCH,
        work=batch.work,
        scope={"ac": batch.ac, "days": days, "lookback_days": batch.lookback_days},
        identity={
            "run_id": batch.run_id or str(uuid.uuid4()),
            "step_id": batch.step_id or _step_id(batch.work, days),
            "logical_attempt_id": batch.logical_attempt_id,
            "engine_attempt_id": batch.engine_attempt_id,
            "plan_version": batch.plan_version,
        },
        params=dict(batch.params),
        correlation_id=batch.correlation_id,
        triggered_by=batch.triggered_by,
    )


def dispatch_event(
    engine: MetricExecutionEngine,
    event: DomainEvent | Mapping[str, Any],
    *,
    dry_run: bool = False,
    engine_attempt_id: int = 0,
) -> ExecutionResult:
    """Translate ``event`` and run it through the one entry point."""
    return engine.execute(handle_event(event, dry_run=dry_run, engine_attempt_id=engine_attempt_id))


def dispatch_batch(
    engine: MetricExecutionEngine, params: BatchParams | Mapping[str, Any], *, now: dt.datetime | None = None
) -> ExecutionResult:
    """Translate ``params`` and run them through the one entry point."""
    return engine.execute(run_batch(params, now=now))


def _parse(model: type[_Model], raw: _Model | Mapping[str, Any], what: str) -> _Model:
    if isinstance(raw, model):
        return raw
    if not isinstance(raw, Mapping):
        expected = f"{model.__name__} (or a mapping of its fields)"
        msg = f"invalid {what}: expected {expected}, got {type(raw).__name__}"
        raise InvalidContextError(msg)
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise InvalidContextError(describe_problems(what, exc)) from None


def _step_id(work: str, days: DayRange | None) -> str:
    return f"{work}[{days.label()}]" if days is not None else work
