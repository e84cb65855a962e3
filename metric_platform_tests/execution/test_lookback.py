"""The shared lookback utility: day ranges, partition keys and the widened window."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metric_platform.execution import (
    DayRange,
    InvalidContextError,
    Scope,
    day_range,
    effective_window,
    parse_partition_key,
    range_from_partition_keys,
)

_days = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2100, 12, 31))


@given(start=_days, length=st.integers(0, 400), lookback=st.integers(0, 3660))
def test_the_effective_window_widens_the_days_backwards_by_the_lookback(
    start: dt.date, length: int, lookback: int
) -> None:
    days = DayRange(start=start, end=start + dt.timedelta(days=length))
    window = effective_window(Scope(ac="a", days=days, lookback_days=lookback))
    assert window is not None
    assert window.end == days.end
    assert (days.start - window.start).days == lookback
    assert len(day_range(window.start, window.end)) == length + 1 + lookback


def test_a_scope_without_days_has_no_window_and_a_lookback_before_year_one_is_refused() -> None:
    assert effective_window(Scope(ac="a")) is None
    first = DayRange(start=dt.date(1, 1, 5), end=dt.date(1, 1, 5))
    with pytest.raises(InvalidContextError, match="goes before year 1"):
        effective_window(Scope(ac="a", days=first, lookback_days=10))


@given(start=_days, length=st.integers(0, 100))
def test_day_range_lists_every_day_once_in_order(start: dt.date, length: int) -> None:
    end = start + dt.timedelta(days=length)
    listed = day_range(start, end)
    assert listed[0] == start and listed[-1] == end
    assert all((b - a).days == 1 for a, b in itertools.pairwise(listed))


def test_day_range_refuses_an_inverted_range() -> None:
    with pytest.raises(InvalidContextError, match="starts after it ends"):
        day_range(dt.date(2026, 1, 2), dt.date(2026, 1, 1))


@given(day=_days)
def test_a_partition_key_round_trips(day: dt.date) -> None:
    assert parse_partition_key(day.isoformat()) == day


def test_partition_keys_make_a_range() -> None:
    assert range_from_partition_keys("2026-01-01", "2026-01-31") == DayRange(
        start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 31)
    )
    assert range_from_partition_keys("2026-02-28").label() == "2026-02-28"
    with pytest.raises(InvalidContextError, match=r"2026-01-31\.\.2026-01-01 starts after it ends"):
        range_from_partition_keys("2026-01-31", "2026-01-01")


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("2026-02-30", "is not a calendar day"),
        ("2026-13-01", "is not a calendar day"),
        ("2026-1-01", "is not a day of the form YYYY-MM-DD"),
        ("20260101", "is not a day of the form YYYY-MM-DD"),
        ("2026-W05-1", "is not a day of the form YYYY-MM-DD"),
        ("2026-01-01-00:00", "is not a day of the form YYYY-MM-DD"),
        ("", "is not a day of the form YYYY-MM-DD"),
        (20260101, "is text of the form YYYY-MM-DD, got int"),
    ],
)
def test_a_bad_partition_key_says_what_a_key_looks_like(key: object, problem: str) -> None:
    with pytest.raises(InvalidContextError, match=problem):
        parse_partition_key(key)  # type: ignore[arg-type]
