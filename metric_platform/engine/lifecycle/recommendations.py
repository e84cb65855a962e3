"""Promotion and too-large-to-memoize recommendations (seed 003 §9.3, §15.7), pure.

The engine never edits an AC: it says what an author may paste. A grain requested often, on enough
distinct days of the window, is *hot*: not yet declared, it is recommended as a ``cache_hint`` grain
(materialized eagerly, §9.2); declared already, as a declared schema (a pre-aggregate table the AC
reads instead, §9.3). A result over the per-entry byte cap is served but not memoized; the
recommendation names a coarser grain that would be cacheable (§15.7).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from metric_platform.engine.lifecycle.types import EngineLimits, Recommendation
from metric_platform.engine.serving.entry_meta import verification_level
from metric_platform.engine.store.keys import Domain
from metric_platform.engine.store.records import GrainRequests
from metric_platform.semantics.operators import result_type
from metric_platform.semantics.spec import AnalyticalContext, Grain, MetricFamily
from metric_platform.semantics.types import ColumnType, TimeGrain
from metric_platform.semantics.validate_families import derive_base_grain

_COARSER = {
    TimeGrain.DAY: TimeGrain.MONTH,
    TimeGrain.WEEK: TimeGrain.MONTH,
    TimeGrain.MONTH: TimeGrain.QUARTER,
    TimeGrain.QUARTER: TimeGrain.YEAR,
}


def recommend(
    ac: AnalyticalContext,
    requests: Sequence[GrainRequests],
    oversized: Sequence[Mapping[str, Any]],
    limits: EngineLimits,
) -> list[Recommendation]:
    out: list[Recommendation] = []
    min_days = min(limits.promotion_min_days, limits.promotion_window_days)
    for grain_requests in sorted(requests, key=lambda r: (-r.hits, r.dataset_id, r.anchor)):
        family = ac.families.get(grain_requests.dataset_id)
        if grain_requests.domain is not Domain.METRIC or family is None:
            continue
        if grain_requests.hits < limits.promotion_min_hits or grain_requests.active_days < min_days:
            continue
        out.append(_promotion(ac, family, grain_requests, limits))
    for record in oversized:
        family = ac.families.get(str(record.get("family")))
        if family is not None:
            out.append(_coarser(ac, family, tuple(record.get("anchor", ())), record))
    return out


def _promotion(
    ac: AnalyticalContext, family: MetricFamily, hot: GrainRequests, limits: EngineLimits
) -> Recommendation:
    grain = hot.anchor
    sustained = (
        f"requested {hot.hits} times on {hot.active_days} day(s) within {limits.promotion_window_days} days "
        f"(thresholds: {limits.promotion_min_hits} hits, {limits.promotion_min_days} days)"
    )
    missing = not_determined(ac, family, grain)
    if grain in family.cache_grains or missing:
        name = schema_name(family, grain)
        why = (
            "is a cache_hint grain"
            if not missing
            else f"cannot be a cache_hint grain (the base grain ({', '.join(family.base_grain)}) does not "
            f"determine {', '.join(missing)}) and"
        )
        return Recommendation(
            "declared_schema",
            family.name,
            grain,
            hot.hits,
            f"{family.name} at ({', '.join(grain)}) {why} {sustained}; promote it to a "
            f"declared schema: build the pre-aggregate table {name!r} and bind its dimensions to it",
            schema_stanza(ac, family, grain),
        )
    return Recommendation(
        "cache_hint",
        family.name,
        grain,
        hot.hits,
        f"{family.name} at ({', '.join(grain)}) is {sustained}; declare it hot so it is materialized eagerly",
        cache_hint_stanza(family, grain),
    )


def _coarser(
    ac: AnalyticalContext, family: MetricFamily, grain: Grain, record: Mapping[str, Any]
) -> Recommendation:
    coarser = coarser_grain(ac, grain)
    if coarser and not_determined(ac, family, coarser):
        coarser = ()  # not a valid cache_hint grain of this family: nothing to paste
    suggestion = (
        f"a coarser grain such as ({', '.join(coarser)}) would be cacheable"
        if coarser
        else "no coarser cache_hint grain of this family"
    )
    return Recommendation(
        "coarser_grain",
        family.name,
        grain,
        int(record.get("times", 1)),
        f"{family.name} at ({', '.join(grain)}) came to {record.get('bytes')} bytes, over the "
        f"{record.get('cap')}-byte entry cap (last {record.get('last_seen')}): served but not memoized; "
        f"{suggestion}",
        cache_hint_stanza(family, coarser) if coarser else "",
    )


def not_determined(ac: AnalyticalContext, family: MetricFamily, grain: Grain) -> tuple[str, ...]:
    """The dimensions of ``grain`` the family's base grain does not determine, so that the AC
    validator would reject it as a cache_hint grain. A base grain derived from the cache hints
    (none declared: it equals the derivation) is derived again with the new grain, so it always
    determines it."""
    day = ac.day_dimension
    if day is not None and derive_base_grain(family.cache_grains, day, ac) == family.base_grain:
        return ()
    return ac.fd_dag.unreachable(family.base_grain, grain)


def coarser_grain(ac: AnalyticalContext, grain: Grain) -> Grain:
    """One step coarser: the time dimension to the next calendar grain the AC declares, else the
    last non-time dimension dropped (empty when nothing is left to drop)."""
    by_grain = {spec.time_grain: name for name, spec in ac.dimensions.items() if spec.time_grain}
    for index, dim in enumerate(grain):
        tg = ac.dimension(dim).time_grain
        step = _COARSER.get(tg) if tg is not None else None
        while step is not None and step not in by_grain:
            step = _COARSER.get(step)
        if step is not None:
            return ac.canonical_grain([*grain[:index], by_grain[step], *grain[index + 1 :]])
    plain = [d for d in grain if ac.dimension(d).time_grain is None]
    if not plain:
        return ()
    return ac.canonical_grain([d for d in grain if d != plain[-1]])


def cache_hint_stanza(family: MetricFamily, grain: Grain) -> str:
    """The family's whole ``cache_hint`` block with ``grain`` added, to replace the old one."""
    grains = [list(g) for g in family.cache_grains]
    if list(grain) not in grains:
        grains.append(list(grain))
    body = yaml.safe_dump(
        {"cache_hint": {"materialize_at": grains}}, default_flow_style=None, sort_keys=False
    )
    return f"# metric_families -> {family.name}:\n{body}"


def schema_name(family: MetricFamily, grain: Grain) -> str:
    return f"{family.name}_by_{'_'.join(grain)}" if grain else f"{family.name}_total"


def schema_stanza(ac: AnalyticalContext, family: MetricFamily, grain: Grain) -> str:
    """A ``schemas`` entry for the pre-aggregate table (the author creates the table)."""
    columns: dict[str, str] = {}
    for dim in grain:
        (binding,) = ac.bindings(family.root_schema, (dim,))
        kind = (
            ColumnType.DATE
            if binding.time_grain is not None
            else ac.schema(binding.schema).column_type(binding.column)
        )
        columns[dim] = kind.value
    value_type = result_type(family.operator, ac.schema(family.root_schema).column_type(family.root_column))
    columns[family.name] = value_type.value
    name = schema_name(family, grain)
    entry = {
        "name": name,
        "table": name,
        "verification_level": verification_level(ac, family, grain).value,
        "columns": columns,
    }
    body = yaml.safe_dump({"schemas": [entry]}, sort_keys=False)
    return f"# add to schemas (and bind {', '.join(grain) or 'no dimension'} to it under dimensions):\n{body}"
