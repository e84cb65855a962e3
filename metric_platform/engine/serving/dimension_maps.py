"""Dimension maps for non-time FD edges (store -> region), verified on the data and memoized.

A rollup along a non-time edge joins the map ``finer -> coarser`` read from a schema that binds
both dimensions. The edge is declared in the AC, but a declaration is not a fact: before the first
use the map is checked (each finer value has exactly one coarser value), so a violated edge is a
typed error naming the offending keys, never a silently fanned-out sum. The verified map is kept
in the store's QM domain (``fd_map``) with the schema's fingerprint and its source fingerprint
(source identity and table stamp, as QM entries); it is used only while both match.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from metric_platform.backends.identity import table_fingerprint
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.engine.store.records import Entry, EntryMeta
from metric_platform.errors import UserError
from metric_platform.semantics.fd_dag import FDEdge
from metric_platform.semantics.fingerprint import schema_fingerprint
from metric_platform.semantics.spec import AnalyticalContext

DATASET = "fd_map"
_SHOWN = 5


class FDViolationError(UserError):
    """A declared FD edge does not hold on the data."""


def map_schema(ac: AnalyticalContext, edge: FDEdge) -> str | None:
    """A schema binding both dimensions of ``edge`` directly, or None."""
    finer, coarser = ac.dimension(edge.finer), ac.dimension(edge.coarser)
    for schema in finer.columns:
        if schema in coarser.columns:
            return schema
    return None


def verify(frame: pl.DataFrame, edge: FDEdge, schema: str) -> None:
    """Raise FDViolationError when some finer value maps to several coarser values (NULL counts)."""
    bad = (
        frame.group_by(edge.finer)
        .agg(pl.col(edge.coarser).unique().sort(nulls_last=True).alias("values"))
        .filter(pl.col("values").list.len() > 1)
        .sort(edge.finer, nulls_last=True)
    )
    if bad.is_empty():
        return
    shown = "; ".join(
        f"{row[edge.finer]!r} -> {', '.join(repr(v) for v in row['values'])}"
        for row in bad.head(_SHOWN).to_dicts()
    )
    more = f" (and {bad.height - _SHOWN} more)" if bad.height > _SHOWN else ""
    msg = (
        f"the declared FD edge {edge.finer} -> {edge.coarser} does not hold in schema {schema!r}: "
        f"{bad.height} {edge.finer} value(s) have several {edge.coarser} values: {shown}{more}; "
        f"fix the data or remove the edge [{edge.finer}, {edge.coarser}] from fd_edges"
    )
    raise FDViolationError(msg)


def _check_unique_keys(rows: pl.DataFrame, edge: FDEdge, schema: str) -> None:
    """The schema is joined many-to-one on its key: a repeated key would fan the fact rows out in a
    backend's join (counting them twice) while the rollup counts them once. Refuse both."""
    repeated = rows.filter(pl.col(edge.finer).is_not_null() & pl.col(edge.finer).is_duplicated())
    if repeated.is_empty():
        return
    keys = sorted({str(v) for v in repeated[edge.finer].to_list()})
    more = f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    msg = (
        f"schema {schema!r} lists {edge.finer} value(s) {', '.join(map(repr, keys[:_SHOWN]))}{more} more "
        f"than once, so joining it on {edge.finer} would count facts twice; make {edge.finer} unique there"
    )
    raise FDViolationError(msg)


class DimensionMaps:
    def __init__(self, ac: AnalyticalContext, store: EntryStore) -> None:
        self.ac = ac
        self.store = store

    def get_all(
        self, edges: Iterable[FDEdge], *, backend: DataAPIBackend
    ) -> tuple[dict[FDEdge, pl.LazyFrame], list[Entry]]:
        """The maps of ``edges``, and the memoized entries they were read from: the caller records
        the access with its own (one write for the whole serve), so a map in use ages like the
        slices it serves with instead of looking idle to the eviction scorer."""
        maps: dict[FDEdge, pl.LazyFrame] = {}
        used: list[Entry] = []
        for edge in edges:
            maps[edge], entry = self._get(edge, backend)
            if entry is not None:
                used.append(entry)
        return maps, used

    def _get(self, edge: FDEdge, backend: DataAPIBackend) -> tuple[pl.LazyFrame, Entry | None]:
        schema = map_schema(self.ac, edge)
        if schema is None:
            msg = f"no schema binds both {edge.finer} and {edge.coarser}; this edge cannot be rolled along"
            raise FDViolationError(msg)
        key = EntryKey(self.ac.name, Domain.QM, DATASET, (edge.finer, edge.coarser))
        fingerprint = schema_fingerprint(self.ac, schema)
        source = table_fingerprint(backend, schema)
        entry = self.store.get(key)
        if (
            entry is not None
            and entry.meta.family_fingerprint == fingerprint
            and entry.meta.source_fingerprint == source
        ):
            return self.store.scan(entry), entry
        finer_col = self.ac.dimension(edge.finer).columns[schema]
        coarser_col = self.ac.dimension(edge.coarser).columns[schema]
        rows = (
            backend.extract_to_lazyframe(schema)
            .select(pl.col(finer_col).alias(edge.finer), pl.col(coarser_col).alias(edge.coarser))
            .collect()
        )
        frame = rows.unique().sort(edge.finer, edge.coarser, nulls_last=True)
        verify(frame, edge, schema)
        _check_unique_keys(rows, edge, schema)
        meta = EntryMeta(
            operator=None,
            partition_invariant=None,
            mvt=None,
            imputation_value=None,
            family_fingerprint=fingerprint,
            source_schemas=(schema,),
            source_filter=None,
            stability_cutoff=None,
            verification_level=self.ac.schema(schema).verification_level.value,
            source_fingerprint=source,
        )
        self.store.publish(key, frame, meta)
        return frame.lazy(), None
