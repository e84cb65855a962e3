"""Declared FD edges verified on a schema's data, as results a quality check can report.

The verdict is the engine's own: an edge holds exactly when :class:`DimensionMaps` accepts its
map, the call a rollup along the edge makes (memoized the same way, keyed on the schema's and the
table's fingerprints). So a check and a rollup cannot disagree, and a passing check leaves the
verified map in the store for the rollups that follow. The engine refuses a map for two reasons:
a finer value with several coarser values (the edge is false), or a finer value listed in several
rows (a join on it would count facts twice); both fail the check.

Only when the engine refuses are the map's rows read again, to list the offending values for the
check's metadata (the refusal's message names at most a few, as text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.engine.serving.dimension_maps import DimensionMaps, FDViolationError, map_schema
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.semantics.fd_dag import FDEdge
from metric_platform.semantics.spec import AnalyticalContext

EXAMPLES = 10


@dataclass(frozen=True)
class Violation:
    """A finer value and the coarser values it maps to in the data (several, or listed twice)."""

    finer: Any
    coarser: tuple[Any, ...]


@dataclass(frozen=True)
class EdgeVerification:
    edge: FDEdge
    schema: str
    holds: bool
    violating: int = 0  # finer values with several coarser values
    repeated: int = 0  # finer values listed in several rows of the schema
    examples: tuple[Violation, ...] = ()  # the first EXAMPLES violating values, by finer value
    refusal: str | None = None  # the engine's message when it refused the map


def verified_edges(ac: AnalyticalContext, schema: str) -> tuple[FDEdge, ...]:
    """The declared non-calendar edges whose map the engine reads from ``schema``, in declared order.

    Calendar edges (day -> month) are arithmetic on dates, never read from data, so there is
    nothing to verify; an edge whose map comes from another schema is that schema's check."""
    out = []
    for edge in ac.fd_dag.edges:
        if ac.dimension(edge.finer).is_time or ac.dimension(edge.coarser).is_time:
            continue
        if map_schema(ac, edge) == schema:
            out.append(edge)
    return tuple(out)


def verify_edges(
    ac: AnalyticalContext, store: EntryStore, schema: str, *, backend: DataAPIBackend
) -> tuple[EdgeVerification, ...]:
    """Verify each of :func:`verified_edges` through the engine's dimension maps."""
    ac.schema(schema)  # an unknown name fails with the known ones, not with an empty result
    maps = DimensionMaps(ac, store)
    out = []
    for edge in verified_edges(ac, schema):
        try:
            maps.get_all([edge], backend=backend)
        except FDViolationError as exc:
            out.append(_refused(ac, edge, schema, str(exc), backend))
        else:
            out.append(EdgeVerification(edge, schema, holds=True))
    return tuple(out)


def _refused(
    ac: AnalyticalContext, edge: FDEdge, schema: str, refusal: str, backend: DataAPIBackend
) -> EdgeVerification:
    finer_col = ac.dimension(edge.finer).columns[schema]
    coarser_col = ac.dimension(edge.coarser).columns[schema]
    rows = (
        backend.extract_to_lazyframe(schema)
        .select(pl.col(finer_col).alias("finer"), pl.col(coarser_col).alias("coarser"))
        .collect()
    )
    return violations(rows, edge, schema, refusal)


def violations(rows: pl.DataFrame, edge: FDEdge, schema: str, refusal: str) -> EdgeVerification:
    """The offending values of a refused map, from its rows (columns ``finer``, ``coarser``).

    Grouped as ``dimension_maps.verify`` groups them (NULL is a value on both sides), so the count
    is the one its message gives; a repeated NULL key is not counted, as the engine ignores it."""
    groups = rows.group_by("finer").agg(
        pl.col("coarser").unique().sort(nulls_last=True).alias("values"),
        pl.len().alias("rows"),
    )
    fanned = pl.col("values").list.len() > 1
    repeated = (pl.col("rows") > 1) & pl.col("finer").is_not_null()
    bad = groups.filter(fanned | repeated).sort("finer", nulls_last=True)
    counts = bad.select(fanned.sum().alias("fanned"), repeated.sum().alias("repeated")).row(0)
    # Fanned-out values first: they say the edge is false, a repeated key only that it is listed twice.
    shown = bad.sort(fanned, descending=True, maintain_order=True).head(EXAMPLES)
    examples = tuple(
        Violation(row["finer"], tuple(row["values"])) for row in shown.select("finer", "values").to_dicts()
    )
    return EdgeVerification(
        edge,
        schema,
        holds=False,
        violating=int(counts[0] or 0),
        repeated=int(counts[1] or 0),
        examples=examples,
        refusal=refusal,
    )
