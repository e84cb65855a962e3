"""Multi-metric queries, with the engine or straight to the backend (seed 003 §13.1, §13.3).

``execute_query(ac, backend, request)`` without an engine calls the backend once per metric at the
target grain (the legacy path); with ``engine=`` every metric goes through ``serve``. Both compose
the same way, so engine-on and engine-off must return identical frames: that equality is the
engine's correctness gate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from metric_platform.backends.normalize import result_schema
from metric_platform.backends.protocol import AggregateRequest, DataAPIBackend, DateWindow
from metric_platform.engine.compose import Frame, compose
from metric_platform.engine.frame_expr import FrameExpression
from metric_platform.engine.post_grain import PostGrainOps
from metric_platform.engine.serving.buckets import partition_window
from metric_platform.engine.serving.entry_meta import verification_level
from metric_platform.engine.serving.types import PathKind, Provenance, ServingPath
from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.spec import AnalyticalContext, Grain

if TYPE_CHECKING:
    from metric_platform.engine.engine import MetricEngine


@dataclass(frozen=True)
class QueryRequest:
    metrics: tuple[str, ...]
    grain: Grain
    window: DateWindow | None = None
    frame_expression: FrameExpression | None = None
    post_grain_ops: PostGrainOps | None = field(default=None)

    def __post_init__(self) -> None:
        if not self.metrics:
            msg = "a query needs at least one metric"
            raise InvalidRequestError(msg)
        if len(set(self.metrics)) != len(self.metrics):
            msg = f"metrics {', '.join(self.metrics)} list one twice"
            raise InvalidRequestError(msg)


def execute_query(
    ac: AnalyticalContext,
    backend: DataAPIBackend,
    request: QueryRequest,
    *,
    engine: MetricEngine | None = None,
    today: dt.date | None = None,
) -> Frame:
    """Without a window both paths cover the AC's partitions (start date to end date or today)."""
    check_query(ac, request)
    if today is None:
        today = engine.today() if engine is not None else dt.date.today()
    window = request.window or partition_window(ac, today)
    served: dict[str, tuple[pl.LazyFrame, Provenance]] = {}
    for name in request.metrics:
        if engine is not None:
            result = engine.serve_metric(name, request.grain, backend=backend, window=window)
            served[name] = (result.frame, result.provenance)
            continue
        family = ac.family(name)
        grain = ac.canonical_grain(request.grain)
        frame = backend.aggregate(AggregateRequest(family, grain, window=window)).select(
            [*request.grain, family.name]
        )
        path = ServingPath(PathKind.BACKEND, name, family.operator, grain, grain, window=window)
        level = verification_level(ac, family, grain)
        served[name] = (frame, Provenance(name, path, backend.name, level.value))
    return compose(served, tuple(request.grain), request.frame_expression, request.post_grain_ops)


def check_query(ac: AnalyticalContext, request: QueryRequest) -> None:
    """Every name and expression checked on an empty frame of the result's schema, before any
    metric is served: bad input fails fast and memoizes nothing."""
    columns: dict[str, pl.DataType] = {}
    for name in request.metrics:
        family = ac.family(name)
        schema = result_schema(ac, family, ac.canonical_grain(request.grain))
        columns.update({dim: schema[dim] for dim in request.grain})
        columns[family.name] = schema[family.name]
    compose(
        {"_": (pl.LazyFrame(schema=columns), None)},
        tuple(request.grain),
        request.frame_expression,
        request.post_grain_ops,
    )
