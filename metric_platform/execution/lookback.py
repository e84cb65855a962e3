"""The shared lookback utility (seed 000 §7): day ranges, partition keys, and the lookback window.

A scope's ``days`` are the days the work is for (a Dagster partition range); ``lookback_days``
widens the range backwards, for work that needs history (a rolling comparison, a late-update
check). The window a work reads is :func:`effective_window`; what it writes stays ``days``.

Pure functions over dates; bad input is an :class:`InvalidContextError` that names the bad value
and the expected form, so an adapter fails before anything runs.
"""

from __future__ import annotations

import datetime as dt

from metric_platform.execution.context import DayRange, InvalidContextError, Scope

PARTITION_KEY_FORM = "YYYY-MM-DD"


def effective_window(scope: Scope) -> DayRange | None:
    """The days the work reads: ``scope.days`` widened backwards by ``scope.lookback_days``.

    None when the scope has no days (work over the whole AC). The scaffold's own ``DayRange``
    rather than a backend's window type: the scaffold imports no engine or backend (seed 000 §8).

    >>> days = DayRange(start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 2))
    >>> effective_window(Scope(ac="a", days=days, lookback_days=7)).label()
    '2026-02-22..2026-03-02'
    """
    if scope.days is None:
        return None
    try:
        start = scope.days.start - dt.timedelta(days=scope.lookback_days)
    except OverflowError:
        msg = (
            f"a lookback of {scope.lookback_days} days before {scope.days.start} goes before year 1; "
            "shorten the lookback"
        )
        raise InvalidContextError(msg) from None
    return DayRange(start=start, end=scope.days.end)


def day_range(start: dt.date, end: dt.date) -> tuple[dt.date, ...]:
    """Every day from ``start`` to ``end``, both included.

    >>> day_range(dt.date(2026, 2, 27), dt.date(2026, 3, 1))[-1]
    datetime.date(2026, 3, 1)
    """
    if start > end:
        msg = f"the day range starts after it ends ({start} > {end}); swap the dates"
        raise InvalidContextError(msg)
    return tuple(start + dt.timedelta(days=i) for i in range((end - start).days + 1))


def parse_partition_key(key: str) -> dt.date:
    """A daily partition key (``2026-01-31``) as a date; anything else is an InvalidContextError."""
    if not isinstance(key, str):
        msg = f"a partition key is text of the form {PARTITION_KEY_FORM}, got {type(key).__name__} {key!r}"
        raise InvalidContextError(msg)
    text = key.strip()
    # fromisoformat alone would also take "20260131" and "2026-W05-1"; a Dagster daily key has one form.
    if len(text) != len(PARTITION_KEY_FORM) or text[4] != "-" or text[7] != "-":
        msg = f"partition key {key!r} is not a day of the form {PARTITION_KEY_FORM} (e.g. 2026-01-31)"
        raise InvalidContextError(msg)
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        msg = f"partition key {key!r} is not a calendar day ({exc}); use {PARTITION_KEY_FORM}"
        raise InvalidContextError(msg) from None


def range_from_partition_keys(first: str, last: str | None = None) -> DayRange:
    """The day range of a partition range ``first``..``last`` (one partition without ``last``).

    >>> range_from_partition_keys("2026-01-01", "2026-01-31").label()
    '2026-01-01..2026-01-31'
    """
    start = parse_partition_key(first)
    end = start if last is None else parse_partition_key(last)
    if start > end:
        msg = f"partition range {first}..{last} starts after it ends; give the earlier key first"
        raise InvalidContextError(msg)
    return DayRange(start=start, end=end)
