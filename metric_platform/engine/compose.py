"""Composing single-metric results into a Frame (seed 003 §8).

Every metric is first served at the target grain (grain reconciliation goes through serve's
exact / rollup / backend machinery), then the frames are FULL OUTER joined on the grain, derived
metrics are evaluated, and the post-grain ops (HAVING, ORDER BY, LIMIT [PER]) run in declared order.

The join treats NULL grain values as a group of their own (``IS NOT DISTINCT FROM``), the way a
semantic layer must: revenue and spend of the stores with no region belong on one row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce

import polars as pl

from metric_platform.engine.frame_expr import FrameExpression
from metric_platform.engine.post_grain import PostGrainOps
from metric_platform.engine.serving.types import Provenance
from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.spec import Grain


@dataclass(frozen=True)
class Frame:
    """A composed result: the collected rows and, per metric column, where it came from."""

    data: pl.DataFrame
    grain: Grain
    provenance: Mapping[str, Provenance]
    derived: Mapping[str, str]  # derived column -> its expression


def join_on_grain(frames: Sequence[pl.LazyFrame], grain: Grain) -> pl.LazyFrame:
    """FULL OUTER join single-metric frames on the grain (NULL keys match NULL keys)."""
    if not frames:
        msg = "compose needs at least one metric"
        raise InvalidRequestError(msg)
    if not grain:  # one row each (an aggregate without GROUP BY): put them side by side
        return reduce(lambda left, right: left.join(right, how="cross"), frames)
    return reduce(
        lambda left, right: left.join(right, on=list(grain), how="full", coalesce=True, nulls_equal=True),
        frames,
    )


def compose(
    served: Mapping[str, tuple[pl.LazyFrame, Provenance | None]],
    grain: Grain,
    frame_expression: FrameExpression | None = None,
    post_grain_ops: PostGrainOps | None = None,
) -> Frame:
    """``served`` maps each metric name to its frame at ``grain`` (grain columns + the metric)."""
    frame = join_on_grain([lf for lf, _ in served.values()], grain)
    if grain:  # the join's order is arbitrary; post-grain ops start from the grain's order
        frame = frame.sort(list(grain), nulls_last=True, maintain_order=True)
    if frame_expression is not None:
        frame = frame_expression.apply(frame)
    if post_grain_ops is not None:
        frame = post_grain_ops.apply(frame, grain=grain)
    derived = {} if frame_expression is None else {d.name: d.expression for d in frame_expression.derived}
    provenance = {name: prov for name, (_, prov) in served.items() if prov is not None}
    return Frame(frame.collect(), grain, provenance, derived)
