"""The execution scaffold (seed 000): one ``execute(context)`` for every way work is started.

Neutral by construction: it imports no engine, semantics or backend, and names no metric; what
runs is a :class:`Work` the caller hands to :class:`MetricExecutionEngine`.
"""

from __future__ import annotations

from metric_platform.execution.adapters import (
    AssetMaterialized,
    BatchParams,
    DomainEvent,
    dispatch_batch,
    dispatch_event,
    handle_event,
    run_batch,
)
from metric_platform.execution.context import (
    DayRange,
    ExecutionContext,
    ExecutionMode,
    InvalidContextError,
    RunIdentity,
    Scope,
    Trigger,
    build_context,
)
from metric_platform.execution.engine import MetricExecutionEngine
from metric_platform.execution.lookback import (
    day_range,
    effective_window,
    parse_partition_key,
    range_from_partition_keys,
)
from metric_platform.execution.results import ExecutionResult, ExecutionStatus, StepError
from metric_platform.execution.step_events import EventRecorder
from metric_platform.execution.work import PreparedWork, Work, WorkOutcome

__all__ = [
    "AssetMaterialized",
    "BatchParams",
    "DayRange",
    "DomainEvent",
    "EventRecorder",
    "ExecutionContext",
    "ExecutionMode",
    "ExecutionResult",
    "ExecutionStatus",
    "InvalidContextError",
    "MetricExecutionEngine",
    "PreparedWork",
    "RunIdentity",
    "Scope",
    "StepError",
    "Trigger",
    "Work",
    "WorkOutcome",
    "build_context",
    "day_range",
    "dispatch_batch",
    "dispatch_event",
    "effective_window",
    "handle_event",
    "parse_partition_key",
    "range_from_partition_keys",
    "run_batch",
]
