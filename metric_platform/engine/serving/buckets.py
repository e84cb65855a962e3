"""Time windows and the calendar buckets they cover (pure).

A bucket is represented by its first day (weeks start on Monday). A bucket is *full* inside a
window when every one of its days lies in the window; the buckets at the window's edges may be
*partial*: they are served (flagged partial) but never memoized, because their value depends on
the window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from metric_platform.backends.protocol import DateWindow
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.semantics.types import TimeGrain

_ONE_DAY = dt.timedelta(days=1)


def bucket_end(grain: TimeGrain, start: dt.date) -> dt.date:
    """The last day of the bucket that starts on ``start``."""
    match grain:
        case TimeGrain.DAY:
            return start
        case TimeGrain.WEEK:
            return start + dt.timedelta(days=6)
        case TimeGrain.MONTH:
            return _add_months(start, 1) - _ONE_DAY
        case TimeGrain.QUARTER:
            return _add_months(start, 3) - _ONE_DAY
        case TimeGrain.YEAR:
            return dt.date(start.year + 1, 1, 1) - _ONE_DAY


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Bucket:
    start: dt.date
    end: dt.date
    full: bool  # every day of the bucket lies inside the window


def buckets(grain: TimeGrain, window: DateWindow) -> tuple[Bucket, ...]:
    """The buckets of ``grain`` that intersect ``window``, in order."""
    out: list[Bucket] = []
    start = grain.bucket_start(window.start)
    while start <= window.end:
        end = bucket_end(grain, start)
        out.append(Bucket(start, end, start >= window.start and end <= window.end))
        start = end + _ONE_DAY
    return tuple(out)


def is_aligned(grain: TimeGrain, window: DateWindow) -> bool:
    """Whether ``window`` is made of whole buckets of ``grain`` (always true for days)."""
    return (
        grain.bucket_start(window.start) == window.start
        and bucket_end(grain, grain.bucket_start(window.end)) == window.end
    )


def partition_window(ac: AnalyticalContext, today: dt.date) -> DateWindow:
    """What a request without a window covers: the AC's partitions, from the start date to the end
    date (or today)."""
    end = ac.partitions.end_date or today
    return DateWindow(ac.partitions.start_date, max(end, ac.partitions.start_date))


def hull(parts: list[Bucket], window: DateWindow) -> DateWindow:
    """The smallest window covering ``parts``, clipped to ``window`` (partial edges stay partial)."""
    return DateWindow(max(parts[0].start, window.start), min(parts[-1].end, window.end))
