"""``serve_metric(..., refresh=True, trust_base=True)``: how a cache-hint grain's materialization
follows its family's partitions (metric_server.py, chooser.py).

Under ``refresh`` a provisional slice is never served from memory; ``trust_base`` makes an exception
for the family's own grains (its base grain and the grain the base is fetched at), which the
family's partitions keep fresh. A stale slice (provisional under an older cutoff) is never trusted,
and a day missing at the trusted grains is fetched and served but not memoized there: the family's
partitions own those slices, and a stale day must stay stale until its final refresh (the stability
sensor reads ``engine.stale()``).

The sample holds 2026-10-22 .. 2026-11-20; retail holds 3 days back. Spend's base grain is
(campaign, day), fetched at itself; revenue's is (region, day), fetched at (store, day).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.serving.types import PathKind, Served
from metric_platform.semantics.spec import AnalyticalContext, Grain
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import (
    CountingBackend,
    direct_metric,
    slices_of,
    sorted_frame,
)

# On MONDAY the cutoff is 2026-11-13: the week's 14th and 15th are provisional. On TUESDAY it is
# 2026-11-14: the slice of the 14th memoized on MONDAY is stale (it crossed the cutoff without its
# final refresh), the 15th is still provisional.
MONDAY = dt.date(2026, 11, 16)
TUESDAY = dt.date(2026, 11, 17)
MONDAY_CUTOFF = dt.date(2026, 11, 13)
WEEK = DateWindow(dt.date(2026, 11, 9), dt.date(2026, 11, 15))  # Monday .. Sunday
STALE_DAY = dt.date(2026, 11, 14)
LAST_DAY = dt.date(2026, 11, 15)

SPEND_BASE = ("campaign", "day")
SPEND_WEEK = ("channel", "week")

# Revenue: on 2 November the cutoff is 30 October, so 31 October and 1 November are provisional.
NOVEMBER_2 = dt.date(2026, 11, 2)
REVENUE_PARTITIONS = DateWindow(dt.date(2026, 10, 1), dt.date(2026, 11, 1))
OCTOBER = DateWindow(dt.date(2026, 10, 1), dt.date(2026, 10, 31))
REVENUE_BASE = ("region", "day")
REVENUE_FETCH = ("store", "day")
REVENUE_MONTH = ("region", "month")


@pytest.fixture
def open_engine(ac: AnalyticalContext, settings: Settings) -> Iterator[Callable[[dt.date], MetricEngine]]:
    """Engines on one store, each with its own clock (a code location reloaded on another day)."""
    opened: list[MetricEngine] = []

    def open_on(today: dt.date) -> MetricEngine:
        engine = MetricEngine.open(ac, settings, today=lambda: today)
        opened.append(engine)
        return engine

    yield open_on
    for engine in opened:
        engine.close()


def assert_rolled_up(
    served: Served,
    backend: CountingBackend,
    ac: AnalyticalContext,
    *,
    family: str,
    grain: Grain,
    window: DateWindow,
    source: Grain,
) -> None:
    """Served by a rollup from ``source`` with no backend call, provisional, and right."""
    assert backend.aggregates == []
    assert served.provenance.path.kind is PathKind.ROLLUP
    assert served.provenance.path.source_anchor == source
    assert served.provenance.provisional_buckets == (window.start,)
    expected = direct_metric(backend.inner, ac, family, grain, window=window)
    assert_frame_equal(sorted_frame(served.frame.collect(), grain), expected)


def materialize_family(
    engine: MetricEngine, backend: CountingBackend, family: str, grain: tuple[str, ...], window: DateWindow
) -> None:
    """What the family asset's partitions do: a pinned refresh serve at the base grain."""
    engine.serve_metric(family, grain, backend=backend, window=window, pin=True, refresh=True)
    backend.aggregates.clear()


def called_windows(backend: CountingBackend) -> list[tuple[dt.date, dt.date]]:
    return [(c.window.start, c.window.end) for c in backend.aggregates if c.window is not None]


def slice_days(
    engine: MetricEngine, ac: AnalyticalContext, family: str, grain: tuple[str, ...]
) -> set[dt.date]:
    return {e.key.slice_day for e in slices_of(engine.store, ac, family, grain) if e.key.slice_day}


def stale_days(engine: MetricEngine, family: str, grain: tuple[str, ...]) -> set[dt.date]:
    return {
        day
        for group in engine.stale()
        if (group.family, group.anchor) == (family, grain)
        for day in group.days
    }


# -- base grain == fetch grain (spend) -------------------------------------------------------------------


@pytest.mark.parametrize("explain", [False, True], ids=["hot-path", "thorough"])
def test_provisional_base_slices_are_rolled_up_without_a_backend_call(
    open_engine: Callable[[dt.date], MetricEngine],
    backend: CountingBackend,
    ac: AnalyticalContext,
    explain: bool,
) -> None:
    engine = open_engine(MONDAY)
    materialize_family(engine, backend, "spend", SPEND_BASE, WEEK)
    provisional = {e.key.slice_day for e in slices_of(engine.store, ac, "spend", SPEND_BASE) if e.provisional}
    assert provisional == {STALE_DAY, LAST_DAY}

    served = engine.serve_metric(
        "spend", SPEND_WEEK, backend=backend, window=WEEK, refresh=True, trust_base=True, explain=explain
    )

    assert_rolled_up(served, backend, ac, family="spend", grain=SPEND_WEEK, window=WEEK, source=SPEND_BASE)


def test_without_trust_base_a_refresh_fetches_the_provisional_days_again(
    open_engine: Callable[[dt.date], MetricEngine], backend: CountingBackend
) -> None:
    """The contrast: ``trust_base`` is what spares the backend call above."""
    engine = open_engine(MONDAY)
    materialize_family(engine, backend, "spend", SPEND_BASE, WEEK)

    engine.serve_metric("spend", SPEND_WEEK, backend=backend, window=WEEK, refresh=True)

    assert called_windows(backend) == [(STALE_DAY, LAST_DAY)]


@pytest.mark.parametrize("explain", [False, True], ids=["hot-path", "thorough"])
def test_a_stale_base_slice_is_fetched_served_fresh_and_left_stale_for_its_final_refresh(
    open_engine: Callable[[dt.date], MetricEngine],
    backend: CountingBackend,
    ac: AnalyticalContext,
    explain: bool,
) -> None:
    materialize_family(open_engine(MONDAY), backend, "spend", SPEND_BASE, WEEK)
    engine = open_engine(TUESDAY)
    assert engine.stability_cutoff() == STALE_DAY
    before = {e.key.slice_day: e for e in slices_of(engine.store, ac, "spend", SPEND_BASE)}
    assert stale_days(engine, "spend", SPEND_BASE) == {STALE_DAY}

    served = engine.serve_metric(
        "spend", SPEND_WEEK, backend=backend, window=WEEK, refresh=True, trust_base=True, explain=explain
    )

    # Only the stale day goes to the backend; the still provisional 15th is trusted.
    assert called_windows(backend) == [(STALE_DAY, STALE_DAY)]
    expected = direct_metric(backend.inner, ac, "spend", SPEND_WEEK, window=WEEK)
    assert_frame_equal(sorted_frame(served.frame.collect(), SPEND_WEEK), expected)
    # The fetched day is not memoized at the base grain: the stale slice is the one the family's
    # partition made, untouched, so the stability sensor still requests its final refresh.
    after = {e.key.slice_day: e for e in slices_of(engine.store, ac, "spend", SPEND_BASE)}
    stale = after[STALE_DAY]
    assert stale == before[STALE_DAY]
    assert stale.pinned and stale.provisional and stale.meta.stability_cutoff == MONDAY_CUTOFF
    assert stale_days(engine, "spend", SPEND_BASE) == {STALE_DAY}


def test_days_missing_at_the_base_grain_are_fetched_and_not_memoized_there(
    open_engine: Callable[[dt.date], MetricEngine], backend: CountingBackend, ac: AnalyticalContext
) -> None:
    engine = open_engine(MONDAY)
    # The family's partitions of the week's first five days only: the 14th and 15th are missing.
    materialize_family(engine, backend, "spend", SPEND_BASE, DateWindow(WEEK.start, dt.date(2026, 11, 13)))

    served = engine.serve_metric(
        "spend", SPEND_WEEK, backend=backend, window=WEEK, refresh=True, trust_base=True
    )

    assert called_windows(backend) == [(STALE_DAY, LAST_DAY)]
    expected = direct_metric(backend.inner, ac, "spend", SPEND_WEEK, window=WEEK)
    assert_frame_equal(sorted_frame(served.frame.collect(), SPEND_WEEK), expected)
    assert slice_days(engine, ac, "spend", SPEND_BASE) == {
        WEEK.start + dt.timedelta(days=i) for i in range(5)
    }


@pytest.mark.parametrize("explain", [False, True], ids=["hot-path", "thorough"])
def test_a_provisional_slice_at_another_grain_is_not_trusted(
    open_engine: Callable[[dt.date], MetricEngine],
    backend: CountingBackend,
    ac: AnalyticalContext,
    explain: bool,
) -> None:
    engine = open_engine(MONDAY)
    # A provisional week slice at (channel, week), memoized with its fetch-grain days; then the
    # days go (what eviction of unpinned entries does), leaving only the week slice.
    engine.serve_metric("spend", SPEND_WEEK, backend=backend, window=WEEK, pin=True, refresh=True)
    [week_slice] = slices_of(engine.store, ac, "spend", SPEND_WEEK)
    assert week_slice.provisional and week_slice.pinned
    for entry in slices_of(engine.store, ac, "spend", SPEND_BASE):
        engine.store.delete(entry.key, force=True)
    backend.aggregates.clear()

    served = engine.serve_metric(
        "spend", SPEND_WEEK, backend=backend, window=WEEK, refresh=True, trust_base=True, explain=explain
    )

    assert served.provenance.path.kind is PathKind.BACKEND
    assert called_windows(backend) == [(WEEK.start, WEEK.end)]
    expected = direct_metric(backend.inner, ac, "spend", SPEND_WEEK, window=WEEK)
    assert_frame_equal(sorted_frame(served.frame.collect(), SPEND_WEEK), expected)
    assert slice_days(engine, ac, "spend", SPEND_BASE) == set()  # fetched, not memoized at the base


# -- base grain != fetch grain (revenue: base (region, day), fetched at (store, day)) ---------------------


@pytest.mark.parametrize(
    ("dropped", "source"),
    [(REVENUE_FETCH, REVENUE_BASE), (REVENUE_BASE, REVENUE_FETCH)],
    ids=["rolled-up-from-base", "rolled-up-from-fetch-grain"],
)
def test_revenue_month_rolls_up_from_either_trusted_grain_without_a_backend_call(
    open_engine: Callable[[dt.date], MetricEngine],
    backend: CountingBackend,
    ac: AnalyticalContext,
    dropped: tuple[str, ...],
    source: tuple[str, ...],
) -> None:
    engine = open_engine(NOVEMBER_2)
    materialize_family(engine, backend, "revenue", REVENUE_BASE, REVENUE_PARTITIONS)
    pinned = {e.key.slice_day: e.provisional for e in slices_of(engine.store, ac, "revenue", REVENUE_BASE)}
    assert {day for day, provisional in pinned.items() if provisional} == {
        dt.date(2026, 10, 31),
        dt.date(2026, 11, 1),
    }
    fetched = slices_of(engine.store, ac, "revenue", REVENUE_FETCH)
    assert fetched and not any(e.pinned for e in fetched)  # only the target of a serve is pinned
    for entry in slices_of(engine.store, ac, "revenue", dropped):
        engine.store.delete(entry.key, force=True)

    served = engine.serve_metric(
        "revenue", REVENUE_MONTH, backend=backend, window=OCTOBER, refresh=True, trust_base=True
    )

    assert_rolled_up(
        served, backend, ac, family="revenue", grain=REVENUE_MONTH, window=OCTOBER, source=source
    )


def test_revenue_days_missing_at_both_trusted_grains_are_not_memoized_at_either(
    open_engine: Callable[[dt.date], MetricEngine], backend: CountingBackend, ac: AnalyticalContext
) -> None:
    engine = open_engine(NOVEMBER_2)
    materialize_family(
        engine, backend, "revenue", REVENUE_BASE, DateWindow(OCTOBER.start, dt.date(2026, 10, 29))
    )
    base_before = slice_days(engine, ac, "revenue", REVENUE_BASE)
    fetch_before = slice_days(engine, ac, "revenue", REVENUE_FETCH)

    engine.serve_metric(
        "revenue", REVENUE_MONTH, backend=backend, window=OCTOBER, refresh=True, trust_base=True
    )

    assert called_windows(backend) == [(dt.date(2026, 10, 30), OCTOBER.end)]
    assert slice_days(engine, ac, "revenue", REVENUE_BASE) == base_before
    assert slice_days(engine, ac, "revenue", REVENUE_FETCH) == fetch_before
    assert dt.date(2026, 10, 30) not in fetch_before
