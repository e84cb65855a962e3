"""The provenance a METRIC entry records in the manifest (seed 003 §6, §12)."""

from __future__ import annotations

import datetime as dt
import json

from metric_platform.engine.store.records import EntryMeta
from metric_platform.semantics.spec import AnalyticalContext, Grain, MetricFamily
from metric_platform.semantics.types import MissingValueKind, MissingValueTreatment, VerificationLevel


def source_schemas(ac: AnalyticalContext, family: MetricFamily, grain: Grain) -> tuple[str, ...]:
    """The root schema and every schema joined to reach the grain's dimensions."""
    schemas = {family.root_schema}
    for binding in ac.bindings(family.root_schema, grain):
        schemas.update(j.to_schema for j in binding.join_path)
    return tuple(sorted(schemas))


def verification_level(ac: AnalyticalContext, family: MetricFamily, grain: Grain) -> VerificationLevel:
    """An entry is no better verified than its weakest source (seed 003 §12.1)."""
    return VerificationLevel.minimum(
        [ac.schema(s).verification_level for s in source_schemas(ac, family, grain)]
    )


def metric_meta(
    ac: AnalyticalContext,
    family: MetricFamily,
    grain: Grain,
    treatment: MissingValueTreatment,
    *,
    cutoff: dt.date | None,
    pinned: bool,
) -> EntryMeta:
    schemas = source_schemas(ac, family, grain)
    filters = [
        {"schema": c.schema, "column": c.column, "op": c.op.value, "value": c.value}
        for c in ac.filter
        if c.schema in schemas
    ]
    imputed = treatment.value if treatment.kind is MissingValueKind.IMPUTE else None
    return EntryMeta(
        operator=family.operator.value,
        partition_invariant=family.operator.partition_invariant,
        mvt=treatment.kind.value,
        imputation_value=None if imputed is None else json.dumps(imputed, default=str),
        family_fingerprint=family.fingerprint,
        source_schemas=schemas,
        source_filter=json.dumps(filters, default=str) if filters else None,
        stability_cutoff=cutoff,
        verification_level=verification_level(ac, family, grain).value,
        source_fingerprint=None,
        pinned=pinned,
    )
