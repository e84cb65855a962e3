"""The METRIC domain's serve in its first form: exact entry, else one backend aggregate, memoized.

Seed 003 §4.1 steps 1 and 3 and §9.4. Rollups along the FD-DAG (step 2), per-day slices and time
windows build on this (issue 3). An entry is served only while its family fingerprint matches the
family's current one, so an edited family never serves values of its old definition.
"""

from __future__ import annotations

import json
from typing import Literal

import polars as pl

from metric_platform.backends.protocol import AggregateRequest, DataAPIBackend
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.engine.store.records import Entry, EntryMeta
from metric_platform.semantics.spec import AnalyticalContext, Grain, MetricFamily
from metric_platform.semantics.types import MissingValueKind, MissingValueTreatment, VerificationLevel


class MetricServer:
    def __init__(self, ac: AnalyticalContext, store: EntryStore, *, entry_byte_cap: int) -> None:
        self.ac = ac
        self.store = store
        self.entry_byte_cap = entry_byte_cap

    def serve(
        self,
        family_name: str,
        anchor: Grain,
        *,
        mvt: MissingValueTreatment | None = None,
        backend: DataAPIBackend,
    ) -> pl.LazyFrame:
        family = self.ac.family(family_name)
        grain = self.ac.canonical_grain(anchor)
        self.ac.bindings(family.root_schema, grain)  # unreachable dimensions fail before any I/O
        columns = [*anchor, family.name]
        treatment = mvt if mvt is not None else family.mvt
        memoizable = treatment == family.mvt  # an override would collide with the family's entry
        key = EntryKey(self.ac.name, Domain.METRIC, family.name, grain)
        entry = self._valid_entry(key, family) if memoizable else None
        if entry is not None:
            self.store.record_access([entry])
            return self.store.scan(entry).select(columns)
        request = AggregateRequest(family, grain, mvt=treatment)
        frame = backend.aggregate(request).collect(engine=_polars_engine(family))
        # seed 003 §9.4 and §15.7: singletons and over-cap results are served, not memoized.
        if memoizable and frame.height > 1 and frame.estimated_size() <= self.entry_byte_cap:
            self.store.publish(key, frame, self._meta(family, grain, treatment))
        return frame.lazy().select(columns)

    def _valid_entry(self, key: EntryKey, family: MetricFamily) -> Entry | None:
        entry = self.store.get(key)
        if entry is None or entry.meta.family_fingerprint != family.fingerprint:
            return None
        return entry

    def _meta(self, family: MetricFamily, grain: Grain, treatment: MissingValueTreatment) -> EntryMeta:
        schemas = {family.root_schema}
        for binding in self.ac.bindings(family.root_schema, grain):
            schemas.update(j.to_schema for j in binding.join_path)
        level = VerificationLevel.minimum([self.ac.schema(s).verification_level for s in schemas])
        filters = [
            {"schema": c.schema, "column": c.column, "op": c.op.value, "value": c.value}
            for c in self.ac.filter
            if c.schema in schemas
        ]
        imputed = treatment.value if treatment.kind is MissingValueKind.IMPUTE else None
        return EntryMeta(
            operator=family.operator.value,
            partition_invariant=family.operator.partition_invariant,
            mvt=treatment.kind.value,
            imputation_value=None if imputed is None else json.dumps(imputed, default=str),
            family_fingerprint=family.fingerprint,
            source_schemas=tuple(sorted(schemas)),
            source_filter=json.dumps(filters, default=str) if filters else None,
            stability_cutoff=None,
            verification_level=level.value,
            source_fingerprint=None,
        )


def _polars_engine(family: MetricFamily) -> Literal["streaming", "in-memory"]:
    """Measured at 10M rows on 2 cores: Polars' streaming engine ran mergeable (partition-invariant)
    aggregates 1.5-2x faster than the in-memory engine, and COUNT_DISTINCT ~4x slower (it needs
    whole groups). SQL backends hand back an already computed frame, so either choice is free."""
    return "streaming" if family.operator.partition_invariant else "in-memory"
