"""Dagster partitions for an AC's assets, and the days a partition (or a range of them) covers.

A family asset is partitioned by day from the AC's start date. A cache-hint grain's asset follows
the grain's time dimension: day → daily, week → weekly from Monday (ISO; Dagster's default week
starts on Sunday), month → monthly, quarter and year → a cron schedule; a grain without a time
dimension is unpartitioned. A coarser schedule starts at the first whole bucket on or after the AC's
start date: a partial first week or month has no partition (its days are still served by the
family's daily partitions and by rollups over any window).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.serving.buckets import bucket_end
from metric_platform.engine.serving.grains import GrainPlanner
from metric_platform.semantics.spec import AnalyticalContext, Grain
from metric_platform.semantics.types import TimeGrain

_ONE_DAY = dt.timedelta(days=1)
_FMT = "%Y-%m-%d"
_CRON = {
    TimeGrain.QUARTER: "0 0 1 1,4,7,10 *",
    TimeGrain.YEAR: "0 0 1 1 *",
}


def first_bucket(grain: TimeGrain, start: dt.date) -> dt.date:
    """The first bucket of ``grain`` that starts on or after ``start``."""
    bucket = grain.bucket_start(start)
    return bucket if bucket == start else bucket_end(grain, bucket) + _ONE_DAY


def daily_partitions(ac: AnalyticalContext) -> dg.DailyPartitionsDefinition:
    end = ac.partitions.end_date
    return dg.DailyPartitionsDefinition(
        start_date=ac.partitions.start_date.isoformat(),
        # Dagster's end is exclusive; the AC's is the last day.
        end_date=(end + _ONE_DAY).isoformat() if end is not None else None,
    )


def grain_partitions(ac: AnalyticalContext, grain: Grain) -> dg.PartitionsDefinition[str] | None:
    """The partitions of a cache-hint grain's asset (None: unpartitioned)."""
    tgrain = GrainPlanner(ac).time_grain(grain)
    if tgrain is None:
        return None
    start = first_bucket(tgrain, ac.partitions.start_date)
    end = ac.partitions.end_date
    end_text = (end + _ONE_DAY).isoformat() if end is not None else None
    match tgrain:
        case TimeGrain.DAY:
            return daily_partitions(ac)
        case TimeGrain.WEEK:
            return dg.WeeklyPartitionsDefinition(
                start_date=start.isoformat(), end_date=end_text, day_offset=1
            )
        case TimeGrain.MONTH:
            return dg.MonthlyPartitionsDefinition(start_date=start.isoformat(), end_date=end_text)
        case TimeGrain.QUARTER | TimeGrain.YEAR:
            return dg.TimeWindowPartitionsDefinition(
                cron_schedule=_CRON[tgrain], start=start.isoformat(), end=end_text, fmt=_FMT
            )


def context_window(context: dg.AssetExecutionContext) -> DateWindow | None:
    """The days the step's partition (or partition range) covers; None when unpartitioned."""
    if not context.has_partition_key and not context.has_partition_key_range:
        return None
    window = context.partition_time_window
    return DateWindow(window.start.date(), window.end.date() - _ONE_DAY)


def partition_keys_of(context: dg.AssetExecutionContext) -> list[str]:
    if context.has_partition_key_range:
        return list(context.partition_keys)
    if context.has_partition_key:
        return [context.partition_key]
    return []
