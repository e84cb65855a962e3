"""Asset factories for an AC's metric families: each family as a daily-partitioned asset at its
base grain, and each ``cache_hint`` grain as an eager asset downstream of it (ARCHITECTURE.md §5).

Every body is the same few lines: the days of the partition (or range), one ``engine.serve``
through the execution door (``door.py``), and the outcome as Dagster events. The engine owns the
storage: a served partition's slices are pinned entries in the engine store, so these assets return
``MaterializeResult`` and no IO manager is involved (``PolarsParquetIOManager`` cannot persist an
output covering several partitions, which a single-run backfill produces).

Serving with ``refresh``: a provisional bucket (inside the hold-off window) is recomputed each time
it is materialized, never an exact memo hit; a stable one is served from memory.
"""

# No ``from __future__ import annotations``: Dagster inspects the asset bodies' ``context``
# annotation at definition time and does not resolve a string.

import warnings
from collections.abc import Iterator

import dagster as dg

from metric_platform.defs.conditions import DEFAULT_CADENCE, family_condition, grain_condition
from metric_platform.defs.door import Door, raise_on_failure
from metric_platform.defs.instance import POOL
from metric_platform.defs.metadata import materialization_metadata, partition_metadata, range_metadata
from metric_platform.defs.partitions import (
    context_window,
    daily_partitions,
    grain_partitions,
    partition_keys_of,
)
from metric_platform.semantics.spec import AnalyticalContext, Grain, MetricFamily

# A backfill is cut into runs of at most this many days: one run costs ~0.3 s on the embedded
# instance, and each run serves its missing days with one backend call per missing range.
DEFAULT_PARTITIONS_PER_RUN = 92

Event = dg.MaterializeResult[None]


def family_key(ac: AnalyticalContext, family: MetricFamily) -> dg.AssetKey:
    return dg.AssetKey([ac.name, family.name])


def grain_key(ac: AnalyticalContext, family: MetricFamily, grain: Grain) -> dg.AssetKey:
    return dg.AssetKey([ac.name, family.name, *grain])


def _tags(ac: AnalyticalContext) -> dict[str, str]:
    return {"metric_platform/ac": ac.name, "metric_platform/tenant": ac.tenant_id}


def serve_events(
    context: dg.AssetExecutionContext, door: Door, ac: AnalyticalContext, family: MetricFamily, grain: Grain
) -> Iterator[Event]:
    """Serve ``family`` at ``grain`` for the step's partitions through the door, and materialize
    them: a range run's partitions each carry their own figures (``partition_metadata``)."""
    window = context_window(context) or door.whole_range(ac.name)
    # A provisional bucket is recomputed, never an exact memo hit (``refresh``); a cache-hint grain
    # rolls it up from the family's own partitions, fresh by their own refreshes (``trust_base``).
    params = {
        "family": family.name,
        "anchor": list(grain),
        "pin": True,
        "refresh": True,
        "trust_base": grain != family.base_grain,
        "figures": True,
    }
    result = door.execute(context, ac.name, "engine.serve", params, window=window)
    raise_on_failure(result)
    keys = partition_keys_of(context)
    if len(keys) <= 1:
        yield dg.MaterializeResult(metadata=materialization_metadata(result))
        return
    for key, own in partition_metadata(keys, result):
        context.add_asset_metadata(own, partition_key=key)
    yield dg.MaterializeResult(metadata=range_metadata(result))


def family_asset(
    ac: AnalyticalContext,
    family: MetricFamily,
    door: Door,
    *,
    cadence: str = DEFAULT_CADENCE,
    partitions_per_run: int = DEFAULT_PARTITIONS_PER_RUN,
) -> dg.AssetsDefinition:
    grain = family.base_grain

    @dg.asset(
        key=family_key(ac, family),
        group_name=ac.name,
        description=(
            f"Metric family {family.name!r} of AC {ac.name!r} ({family.operator.value} of "
            f"{family.root_schema}.{family.root_column}) at its base grain ({', '.join(grain)}), one "
            "partition per day, served through the metric engine and pinned in its store."
        ),
        partitions_def=daily_partitions(ac),
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=partitions_per_run),
        code_version=family.fingerprint,
        automation_condition=family_condition(ac, cadence),
        pool=POOL,
        kinds={"polars"},
        tags=_tags(ac),
        metadata={"base_grain": ", ".join(grain), "operator": family.operator.value},
    )
    def _family(context: dg.AssetExecutionContext) -> Iterator[Event]:
        yield from serve_events(context, door, ac, family, grain)

    return _family


def grain_asset(ac: AnalyticalContext, family: MetricFamily, grain: Grain, door: Door) -> dg.AssetsDefinition:
    partitions = grain_partitions(ac, grain)

    @dg.asset(
        key=grain_key(ac, family, grain),
        group_name=ac.name,
        description=(
            f"{family.name!r} at the cache-hint grain ({', '.join(grain)}): rolled up from the family's "
            "memoized slices along the FD-DAG (no backend call when its days are materialized)."
        ),
        deps=[family_key(ac, family)],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions is not None else None,
        code_version=family.fingerprint,
        automation_condition=grain_condition(partitioned=partitions is not None),
        pool=POOL,
        kinds={"polars"},
        tags=_tags(ac),
        metadata={"grain": ", ".join(grain)},
    )
    def _grain(context: dg.AssetExecutionContext) -> Iterator[Event]:
        yield from serve_events(context, door, ac, family, grain)

    return _grain


def metric_assets(
    ac: AnalyticalContext, door: Door, *, cadence: str = DEFAULT_CADENCE
) -> list[dg.AssetsDefinition]:
    """Every family asset of ``ac`` and its cache-hint grains' assets (a grain equal to the base
    grain is the family asset itself)."""
    out: list[dg.AssetsDefinition] = []
    with warnings.catch_warnings():
        # ``backfill_policy`` is marked beta in Dagster 1.13; single- and multi-run backfills are
        # what these assets are built around, and its tests pin the behaviour we rely on.
        warnings.simplefilter("ignore", dg.BetaWarning)
        for family in ac.families.values():
            out.append(family_asset(ac, family, door, cadence=cadence))
            for grain in dict.fromkeys(family.cache_grains):
                if grain != family.base_grain:
                    out.append(grain_asset(ac, family, grain, door))
    return out
