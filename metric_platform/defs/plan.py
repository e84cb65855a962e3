"""Which runs materialize an AC's assets over a day range, headless (the main job): what a data
engineer would launch from the UI, in dependency order.

1. the profile assets and their checks (unpartitioned);
2. every family asset over the days, as one range run (``dagster/asset_partition_range_*`` tags):
   each family is served with one backend call per missing range;
3. per partitioning of the cache-hint grains (daily, weekly, monthly, …), one range run over the
   whole buckets inside the days: rolled up from the families' memoized slices;
4. the unpartitioned assets (grains without time, user assets reading families).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

from metric_platform.backends.protocol import DateWindow
from metric_platform.semantics.spec import AnalyticalContext

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PROFILE_PREFIX = "qm_profile"  # profile assets are [ac, qm_profile, schema]


@dataclass(frozen=True)
class MaterializationStep:
    label: str
    keys: tuple[dg.AssetKey, ...]
    tags: Mapping[str, str] = field(default_factory=dict)
    describe: bool = True  # print each materialization's figures


def _range_tags(keys: list[str]) -> dict[str, str]:
    return {RANGE_START: keys[0], RANGE_END: keys[-1]}


def keys_within(partitions: dg.PartitionsDefinition[str], window: DateWindow, now: dt.datetime) -> list[str]:
    """The partition keys whose whole time window lies inside ``window``, in order."""
    assert isinstance(partitions, dg.TimeWindowPartitionsDefinition)
    inside = []
    for key in partitions.get_partition_keys(current_time=now):
        span = partitions.time_window_for_partition_key(key)
        if span.start.date() >= window.start and span.end.date() - dt.timedelta(days=1) <= window.end:
            inside.append(key)
    return inside


def materialization_plan(
    defs: dg.Definitions, ac: AnalyticalContext, window: DateWindow, *, now: dt.datetime
) -> list[MaterializationStep]:
    graph = defs.resolve_asset_graph()
    mine = [key for key in graph.get_all_asset_keys() if key.path[0] == ac.name and graph.has(key)]
    families = {dg.AssetKey([ac.name, name]) for name in ac.families}
    profiles = sorted(k for k in mine if len(k.path) == 3 and k.path[1] == PROFILE_PREFIX)
    steps: list[MaterializationStep] = []
    if profiles:
        steps.append(MaterializationStep("profiles and checks", tuple(profiles), describe=False))
    daily = graph.get(next(iter(families))).partitions_def if families else None
    daily_keys = keys_within(daily, window, now) if daily is not None else []
    if daily_keys:
        steps.append(MaterializationStep("families", tuple(sorted(families)), _range_tags(daily_keys)))
    by_partitions: dict[dg.PartitionsDefinition[str], list[dg.AssetKey]] = {}
    unpartitioned: list[dg.AssetKey] = []
    for key in sorted(set(mine) - families - set(profiles)):
        partitions = graph.get(key).partitions_def
        if partitions is None:
            unpartitioned.append(key)
        else:
            by_partitions.setdefault(partitions, []).append(key)
    for partitions, keys in by_partitions.items():
        inside = keys_within(partitions, window, now)
        if inside:
            label = f"cache-hint grains by {_kind(partitions)}"
            steps.append(MaterializationStep(label, tuple(keys), _range_tags(inside)))
    if unpartitioned:
        steps.append(MaterializationStep("unpartitioned assets", tuple(unpartitioned)))
    return steps


def _kind(partitions: dg.PartitionsDefinition[str]) -> str:
    if isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        cron = partitions.cron_schedule
        return {
            "0 0 * * *": "day",
            "0 0 * * 1": "week",
            "0 0 1 * *": "month",
            "0 0 1 1,4,7,10 *": "quarter",
            "0 0 1 1 *": "year",
        }.get(cron, cron)
    return type(partitions).__name__
