"""Rolling a memoized METRIC result up to a coarser grain (seed 003 §5), exactly as SQL would.

Entries carry, beside each group's value, ``__rows`` (rows in the group) and ``__nonnull`` (non-null
raw values). Those make the rollup give the answer SQL gives on the raw rows under every
missing-value treatment, which seed §5.4 gets wrong for Polars: ``pl.sum`` skips NULL (a
propagate-treated rollup would lose its NULL) and gives 0 over nothing (a skip-treated SUM over
all-NULL groups must stay NULL).

Time dimensions are derived by truncating the finer bucket date (buckets nest: a day's month is
its month, a month's quarter is its quarter). Non-time FD edges are applied by joining a
dimension map (finer -> coarser), verified on the data before it is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import assert_never

import polars as pl

from metric_platform.backends.normalize import NONNULL_COLUMN, ROWS_COLUMN
from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.fd_dag import FDEdge
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.spec import AnalyticalContext, Grain
from metric_platform.semantics.types import MissingValueKind, TimeGrain

_TRUNCATE = {TimeGrain.WEEK: "1w", TimeGrain.MONTH: "1mo", TimeGrain.QUARTER: "1q", TimeGrain.YEAR: "1y"}


@dataclass(frozen=True)
class Derivation:
    """How one target dimension is obtained from the source grain."""

    target: str
    source: str
    edges: tuple[FDEdge, ...]  # empty when the dimension is already in the source
    time_grain: TimeGrain | None  # set for time dimensions: truncate the source bucket date


def plan_rollup(ac: AnalyticalContext, source: Grain, target: Grain) -> tuple[Derivation, ...] | None:
    """For each target dimension the shortest FD path from a source dimension; None if some
    target dimension is determined by no source dimension."""
    out = []
    for dim in target:
        best: tuple[str, tuple[FDEdge, ...]] | None = None
        for src in source:
            path = ac.fd_dag.path(src, dim)
            if path is not None and (best is None or len(path) < len(best[1])):
                best = (src, path)
        if best is None:
            return None
        out.append(Derivation(dim, best[0], best[1], ac.dimension(dim).time_grain))
    return tuple(out)


def map_edges(derivations: tuple[Derivation, ...]) -> tuple[FDEdge, ...]:
    """The non-time edges whose dimension maps the rollup joins, in first-use order."""
    seen: dict[FDEdge, None] = {}
    for derivation in derivations:
        if derivation.time_grain is None:
            seen.update(dict.fromkeys(derivation.edges))
    return tuple(seen)


def rollup(
    frame: pl.LazyFrame,
    *,
    derivations: tuple[Derivation, ...],
    maps: Mapping[FDEdge, pl.LazyFrame],
    operator: Operator,
    treatment: MissingValueKind,
    value: str,
) -> pl.LazyFrame:
    """Aggregate ``frame`` (source dims, value, counts) to the derivations' target grain."""
    present = set(frame.collect_schema().names())
    for edge in map_edges(derivations):
        if edge.coarser in present:
            continue
        frame = frame.join(maps[edge], on=edge.finer, how="left")
        present.add(edge.coarser)
    # Time dimensions: truncate the source bucket date; non-time ones arrived through the joins.
    derived = [
        pl.col(d.source).dt.truncate(_TRUNCATE[d.time_grain]).alias(d.target)
        for d in derivations
        if d.time_grain is not None and d.source != d.target
    ]
    if derived:
        frame = frame.with_columns(derived)
    keys = [d.target for d in derivations]
    aggs = combine(operator, treatment, value)
    return frame.group_by(keys).agg(aggs) if keys else frame.select(aggs)


def combine(operator: Operator, treatment: MissingValueKind, value: str) -> list[pl.Expr]:
    """Aggregations combining partial results into the SQL answer over the union of their rows."""
    if not operator.partition_invariant:
        msg = f"{operator} is not partition-invariant: its results cannot be rolled up"
        raise InvalidRequestError(msg)
    v = pl.col(value)
    rows, nonnull = pl.col(ROWS_COLUMN).sum(), pl.col(NONNULL_COLUMN).sum()
    # With imputation every row has a value, whatever the raw NULLs were.
    has_value = (rows if treatment is MissingValueKind.IMPUTE else nonnull) > 0
    combined: pl.Expr
    match operator:
        case Operator.SUM:
            combined = pl.when(has_value).then(v.sum())
        case Operator.COUNT:
            combined = v.sum()
        case Operator.MIN:
            # SQL orders NaN above every number. A partial MIN is NaN only when all its values
            # were; Polars' min skips NaN unless every partial is NaN: the SQL answer.
            combined = v.min()
        case Operator.MAX:
            # One NaN partial makes the MAX NaN, as in SQL; Polars' max would skip it.
            combined = v.nan_max()
        case Operator.BOOL_AND:
            combined = pl.when(has_value).then(v.all())
        case Operator.BOOL_OR:
            combined = pl.when(has_value).then(v.any())
        case Operator.AVG | Operator.MEDIAN | Operator.COUNT_DISTINCT:
            raise AssertionError(operator)  # excluded above
        case _:
            assert_never(operator)
    if treatment is MissingValueKind.PROPAGATE:
        combined = pl.when(nonnull == rows).then(combined)
    return [combined.alias(value), rows.alias(ROWS_COLUMN), nonnull.alias(NONNULL_COLUMN)]
