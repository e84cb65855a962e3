"""The stability window under a fake clock (seed 003 §11; issue 4 "must show"): rolling the cutoff
forward makes exactly the right slices stale, refresh reports and recomputes them, and serving
afterwards recomputes those and nothing else (backend calls counted)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.lifecycle.late_updates import late_days
from metric_platform.engine.lifecycle.types import StaleSlices
from metric_platform.engine.serving.types import PathKind
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import (
    SAMPLE_WINDOW,
    CountingBackend,
    direct_metric,
    sorted_frame,
    write_ac_variant,
)

STORE_DAY = ("store", "day")
NOVEMBER = DateWindow(date(2026, 11, 1), date(2026, 11, 30))


class Clock:
    """The engine's settable "today"."""

    def __init__(self, today: date) -> None:
        self.today = today

    def __call__(self) -> date:
        return self.today

    def advance(self, days: int) -> None:
        self.today += timedelta(days=days)


@pytest.fixture
def clock() -> Clock:
    return Clock(date(2026, 11, 21))  # hold_off_days 3: cutoff 2026-11-18


@pytest.fixture
def eng(ac: AnalyticalContext, settings: Settings, clock: Clock) -> Iterator[MetricEngine]:
    with MetricEngine.open(ac, settings, today=clock) as engine:
        yield engine


def ranges(backend: CountingBackend) -> list[DateWindow | None]:
    return [request.window for request in backend.aggregates]


def check(
    served_frame: pl.LazyFrame,
    *,
    backend: CountingBackend,
    ac: AnalyticalContext,
    family: str,
    grain: tuple[str, ...],
    window: DateWindow,
) -> None:
    expected = direct_metric(backend.inner, ac, family, grain, window=window)
    assert_frame_equal(sorted_frame(served_frame.collect(), grain), sorted_frame(expected, grain))


def test_rolling_the_cutoff_makes_exactly_the_crossed_days_stale(
    eng: MetricEngine, backend: CountingBackend, clock: Clock, ac: AnalyticalContext
) -> None:
    first = eng.serve_metric("revenue", STORE_DAY, backend=backend, window=SAMPLE_WINDOW)
    assert eng.stability_cutoff() == date(2026, 11, 18)
    assert first.provenance.provisional_buckets == (date(2026, 11, 19), date(2026, 11, 20))
    assert eng.stale() == []

    clock.advance(1)  # cutoff 11-19: the 11-19 slice was computed provisional and is now stale
    assert eng.stale() == [StaleSlices("revenue", STORE_DAY, (date(2026, 11, 19),), pinned=False)]
    dry = eng.refresh(backend=backend, dry_run=True)
    assert dry.groups == tuple(eng.stale()) and dry.recomputed == 0
    assert len(eng.stale()) == 1, "a dry run changes nothing"

    backend.aggregates.clear()
    again = eng.serve_metric("revenue", STORE_DAY, backend=backend, window=SAMPLE_WINDOW)
    assert ranges(backend) == [DateWindow.day(date(2026, 11, 19))], "only the stale day is recomputed"
    check(again.frame, backend=backend, ac=ac, family="revenue", grain=STORE_DAY, window=SAMPLE_WINDOW)
    assert again.provenance.provisional_buckets == (date(2026, 11, 20),)
    assert eng.stale() == []

    backend.aggregates.clear()
    hit = eng.serve_metric("revenue", STORE_DAY, backend=backend, window=SAMPLE_WINDOW)
    assert hit.provenance.path.kind is PathKind.EXACT and backend.aggregates == []
    assert hit.provenance.provisional, "a provisional slice is served, flagged"

    clock.advance(2)  # cutoff 11-21: 11-20 crosses; 11-19 was recomputed under 11-19, stable now
    assert eng.stale() == [StaleSlices("revenue", STORE_DAY, (date(2026, 11, 20),), pinned=False)]
    backend.aggregates.clear()
    report = eng.refresh(backend=backend)
    assert (report.recomputed, report.backend_calls) == (1, 1)
    assert ranges(backend) == [DateWindow.day(date(2026, 11, 20))]
    assert eng.stale() == []
    backend.aggregates.clear()
    final = eng.serve_metric("revenue", STORE_DAY, backend=backend, window=SAMPLE_WINDOW)
    assert final.provenance.path.kind is PathKind.EXACT and backend.aggregates == []
    assert not final.provenance.provisional
    check(final.frame, backend=backend, ac=ac, family="revenue", grain=STORE_DAY, window=SAMPLE_WINDOW)


def test_a_refresh_or_materialization_recomputes_provisional_slices_never_stable_ones(
    eng: MetricEngine, backend: CountingBackend
) -> None:
    window = DateWindow(date(2026, 11, 17), date(2026, 11, 20))  # 17, 18 stable; 19, 20 provisional
    eng.serve_metric("revenue", STORE_DAY, backend=backend, window=window, pin=True)
    for _ in range(2):
        backend.aggregates.clear()
        served = eng.serve_metric(
            "revenue", STORE_DAY, backend=backend, window=window, pin=True, refresh=True
        )
        assert ranges(backend) == [DateWindow(date(2026, 11, 19), date(2026, 11, 20))]
        assert served.provenance.path.kind is PathKind.BACKEND
    stable = DateWindow(date(2026, 11, 17), date(2026, 11, 18))
    backend.aggregates.clear()
    served = eng.serve_metric("revenue", STORE_DAY, backend=backend, window=stable, pin=True, refresh=True)
    assert served.provenance.path.kind is PathKind.EXACT and backend.aggregates == []
    assert eng.refresh(backend=backend, dry_run=True, provisional=True).groups == (
        StaleSlices("revenue", STORE_DAY, (date(2026, 11, 19), date(2026, 11, 20)), pinned=True),
    )


def test_a_stale_cache_hint_month_is_refreshed_by_rollup_from_the_refreshed_days(
    eng: MetricEngine, backend: CountingBackend, clock: Clock, ac: AnalyticalContext
) -> None:
    grain = ("region", "month")  # a cache_hint grain of revenue
    served = eng.serve_metric("revenue", grain, backend=backend, window=NOVEMBER)
    assert served.provenance.memoized and served.provenance.provisional_buckets == (date(2026, 11, 1),)
    clock.today = date(2026, 12, 4)  # cutoff 12-01: November and its days 19..30 crossed it
    stale = {(group.anchor, group.days) for group in eng.stale()}
    days = tuple(date(2026, 11, d) for d in range(19, 31))
    assert stale == {(STORE_DAY, days), (grain, (date(2026, 11, 1),))}
    backend.aggregates.clear()
    report = eng.refresh(backend=backend)
    assert report.recomputed == len(days) + 1
    assert ranges(backend) == [DateWindow(date(2026, 11, 19), date(2026, 11, 30))], (
        "one backend call for the days; the month rolls up from them"
    )
    assert eng.stale() == []
    backend.aggregates.clear()
    after = eng.serve_metric("revenue", grain, backend=backend, window=NOVEMBER)
    assert after.provenance.path.kind is PathKind.EXACT and backend.aggregates == []
    check(after.frame, backend=backend, ac=ac, family="revenue", grain=grain, window=NOVEMBER)


def test_provisional_exclude_serves_only_stable_days(
    tmp_path: Path, sample_dir: Path, settings: Settings, clock: Clock, backend: CountingBackend
) -> None:
    path = write_ac_variant(tmp_path / "ac", {"hold_off_days: 3": "hold_off_days: 3\n  provisional: exclude"})
    strict = load_ac(path, source_path=sample_dir)
    with MetricEngine.open(strict, settings, today=clock) as engine:
        served = engine.serve_metric("revenue", STORE_DAY, backend=backend, window=SAMPLE_WINDOW)
        frame = served.frame.collect()
        assert frame["day"].max() == date(2026, 11, 18)
        assert served.provenance.excluded_after == date(2026, 11, 18)
        assert not served.provenance.provisional
        stable = DateWindow(SAMPLE_WINDOW.start, date(2026, 11, 18))
        check(served.frame, backend=backend, ac=strict, family="revenue", grain=STORE_DAY, window=stable)
        backend.aggregates.clear()
        empty = engine.serve_metric(
            "revenue", STORE_DAY, backend=backend, window=DateWindow(date(2026, 11, 19), date(2026, 11, 20))
        )
        assert empty.provenance.path.kind is PathKind.EMPTY and backend.aggregates == []
        assert empty.frame.collect().is_empty()
        assert empty.frame.collect_schema().names() == ["store", "day", "revenue"]


def test_late_updates_find_days_updated_after_they_were_stable_and_refresh_recomputes_them(
    ac: AnalyticalContext,
    settings: Settings,
    backend: CountingBackend,
    clock: Clock,
    sample_frames: dict[str, pl.DataFrame],
) -> None:
    clock.today = date(2026, 11, 25)  # cutoff 11-22; the sample's rows are updated up to 5 days late
    rows = sample_frames["transactions"].filter(pl.col("tenant_id") == "acme")
    late_rows = rows.filter(
        # Day d is stable from d + 3 on (cutoff = today - 3): an update that day is already late.
        (pl.col("updated_at").cast(pl.Date) - pl.col("event_date")).dt.total_days() >= 3,
        pl.col("event_date") <= date(2026, 11, 22),
    )
    expected = late_rows.group_by("event_date").agg(pl.len(), pl.col("updated_at").max()).sort("event_date")
    assert expected.height > 0, "the sample must hold late updates for this test to test anything"
    # The slices are memoized "on" 11-10 at noon: the late days updated after that are the ones
    # whose slices miss an update; the others were computed with theirs.
    computed_at = datetime(2026, 11, 10, 12, tzinfo=UTC)
    stale_days = set(expected.filter(pl.col("updated_at") > computed_at.replace(tzinfo=None))["event_date"])
    assert 0 < len(stale_days) < expected.height
    moment = [computed_at]
    store = EntryStore(settings.manifest_url, settings.data_dir, clock=lambda: moment[0])
    with MetricEngine(ac, store, today=clock) as eng:
        found = eng.late_updates(backend=backend)
        assert [(d.day, d.rows) for d in found] == [(r[0], r[1]) for r in expected.iter_rows()]

        eng.serve_metric("revenue", STORE_DAY, backend=backend, window=SAMPLE_WINDOW)
        dry = eng.refresh(backend=backend, dry_run=True, late_updates=True)
        assert [g.days for g in dry.late_groups] == [tuple(sorted(stale_days))]
        moment[0] = datetime(2026, 11, 25, 6, tzinfo=UTC)
        backend.aggregates.clear()
        report = eng.refresh(backend=backend, late_updates=True)
        assert report.recomputed == len(stale_days)
        recomputed = {day for window in ranges(backend) if window for day in _days(window)}
        assert recomputed == stale_days, "exactly the slices older than their day's last update"
        again = eng.refresh(backend=backend, dry_run=True, late_updates=True)
        assert again.late_days == report.late_days and again.late_groups == (), "nothing left to redo"


def _days(window: DateWindow) -> list[date]:
    return [window.start + timedelta(days=i) for i in range(window.days)]


@pytest.mark.parametrize("as_dates", [False, True])
def test_late_days_counts_updates_from_the_day_a_day_became_stable(as_dates: bool) -> None:
    day = date(2026, 11, 1)  # hold_off 3: stable from 2026-11-04 (today - 3 >= day)
    updates = [
        datetime(2026, 11, 3, 23, 59),  # before: not late
        datetime(2026, 11, 4, 0, 30),  # the day it became stable: late
        datetime(2026, 11, 9, 12, 0),  # late
    ]
    frame = pl.LazyFrame({"event_date": [day] * 3, "updated_at": updates})
    if as_dates:  # a date-typed update column is accepted by the AC validator too
        frame = frame.with_columns(pl.col("updated_at").cast(pl.Date))
    (found,) = late_days(
        frame, day="event_date", updated="updated_at", hold_off_days=3, until=date(2026, 11, 20)
    )
    assert (found.day, found.rows) == (day, 2)
    assert found.last_update.date() == date(2026, 11, 9)
    assert (
        late_days(frame, day="event_date", updated="updated_at", hold_off_days=3, until=date(2026, 10, 31))
        == []
    )
