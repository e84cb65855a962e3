"""The slice-based METRIC serve: windows memoized per day, missing days fetched in one backend call,
coarse grains rolled up from finer slices exactly as SQL answers them (nulls included), partial
buckets, explain's reasons, and a violated FD edge refused rather than fanned out.

Every served frame is compared with the backend's own aggregate over the same window and grain.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.serving.dimension_maps import FDViolationError
from metric_platform.engine.serving.types import FDStep, PathKind, Rejection, Served
from metric_platform.engine.store.keys import Domain
from metric_platform.sample_data import PROJECT_ID, TENANT_ID, write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import (
    RETAIL_YAML,
    SAMPLE_WINDOW,
    CountingBackend,
    direct_metric,
    entries_of,
    fixed_today,
    make_settings,
    read_slices,
    slices_of,
    sorted_frame,
    write_ac_variant,
)

NOVEMBER = DateWindow(date(2026, 11, 1), date(2026, 11, 30))
OCTOBER = DateWindow(date(2026, 10, 1), date(2026, 10, 31))
THREE_WEEKS = DateWindow(date(2026, 10, 26), date(2026, 11, 15))  # Monday .. Sunday
Q4 = DateWindow(date(2026, 10, 1), date(2026, 12, 31))
DECEMBER = DateWindow(date(2026, 12, 1), date(2026, 12, 31))


def check(
    served: Served,
    backend: CountingBackend,
    ac: AnalyticalContext,
    anchor: tuple[str, ...],
    window: DateWindow,
) -> pl.DataFrame:
    """Assert the served frame equals the backend's direct aggregate over the same window; return it."""
    family = served.provenance.family
    expected = direct_metric(backend.inner, ac, family, anchor, window=window)
    assert_frame_equal(sorted_frame(served.frame.collect(), anchor), expected)
    return expected


# -- 1. windows memoize per day slice ----------------------------------------------------------------


NATIVE = ("store", "day")  # the grain a miss of revenue at (region, day) is fetched at


def test_a_range_reads_the_memoized_days_and_fetches_the_missing_hull_in_one_call(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    grain = ("region", "day")  # a cache_hint grain of revenue: kept besides its native days
    day = DateWindow.day(date(2026, 11, 5))
    one = engine.serve_metric("revenue", grain, backend=backend, window=day)
    check(one, backend, ac, grain, day)
    (memoized,) = slices_of(engine.store, ac, "revenue", NATIVE)
    assert memoized.key.slice_day == day.start and one.provenance.memoized
    assert [e.key.slice_day for e in slices_of(engine.store, ac, "revenue", grain)] == [day.start]
    backend.aggregates.clear()

    ten = DateWindow(date(2026, 11, 1), date(2026, 11, 10))
    served = engine.serve_metric("revenue", grain, backend=backend, window=ten)
    check(served, backend, ac, grain, ten)
    # Missing: 1st-4th and 6th-10th; one call over their hull, which crosses the memoized 5th.
    (request,) = backend.aggregates
    assert (request.anchor, request.window, request.with_counts) == (NATIVE, ten, True)
    path = served.provenance.path
    assert (path.kind, path.source_anchor) == (PathKind.BACKEND, NATIVE)
    assert (path.backend_ranges, path.slices_read) == ((ten,), 1)
    slices = slices_of(engine.store, ac, "revenue", NATIVE)
    assert [e.key.slice_day for e in slices] == [date(2026, 11, d) for d in range(1, 11)]
    fifth = next(e for e in slices if e.key == memoized.key)
    assert (fifth.entry_id, fifth.version, fifth.path) == (memoized.entry_id, 1, memoized.path), "kept"
    counted = direct_metric(backend.inner, ac, "revenue", NATIVE, window=ten, with_counts=True)
    assert_frame_equal(read_slices(engine.store, slices), counted)
    targets = slices_of(engine.store, ac, "revenue", grain)
    assert [e.key.slice_day for e in targets] == [date(2026, 11, d) for d in range(1, 11)]
    counted = direct_metric(backend.inner, ac, "revenue", grain, window=ten, with_counts=True)
    assert_frame_equal(read_slices(engine.store, targets), counted)
    backend.aggregates.clear()

    third = engine.serve_metric("revenue", grain, backend=backend, window=ten)
    check(third, backend, ac, grain, ten)
    assert backend.aggregates == []
    assert (third.provenance.path.kind, third.provenance.path.slices_read) == (PathKind.EXACT, 10)

    # Missing days at one edge only: the call covers exactly them, not the whole window.
    wider = DateWindow(date(2026, 11, 1), date(2026, 11, 15))
    check(engine.serve_metric("revenue", grain, backend=backend, window=wider), backend, ac, grain, wider)
    assert [r.window for r in backend.aggregates] == [DateWindow(date(2026, 11, 11), date(2026, 11, 15))]
    assert len(slices_of(engine.store, ac, "revenue", NATIVE)) == 15
    assert len(slices_of(engine.store, ac, "revenue", grain)) == 15


def test_a_miss_keeps_the_target_slices_it_has_memoized_already(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    grain = ("region", "day")
    engine.serve_metric("revenue", grain, backend=backend, window=DateWindow.day(date(2026, 11, 5)))
    (memoized,) = slices_of(engine.store, ac, "revenue", grain)
    ten = DateWindow(date(2026, 11, 1), date(2026, 11, 10))
    served = engine.serve_metric("revenue", grain, backend=backend, window=ten)
    check(served, backend, ac, grain, ten)
    assert served.provenance.path.kind is PathKind.BACKEND
    slices = slices_of(engine.store, ac, "revenue", grain)
    assert len(slices) == ten.days
    fifth = next(e for e in slices if e.key == memoized.key)
    assert (fifth.entry_id, fifth.version, fifth.path) == (memoized.entry_id, 1, memoized.path), "kept"


def test_a_rollup_keeps_the_target_slices_it_has_memoized_already(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    grain = ("channel", "week")  # a cache_hint grain of spend
    engine.serve_metric("spend", ("campaign", "day"), backend=backend, window=THREE_WEEKS)
    first_week = DateWindow(THREE_WEEKS.start, date(2026, 11, 1))
    engine.serve_metric("spend", grain, backend=backend, window=first_week)
    (memoized,) = slices_of(engine.store, ac, "spend", grain)
    served = engine.serve_metric("spend", grain, backend=backend, window=THREE_WEEKS)
    check(served, backend, ac, grain, THREE_WEEKS)
    assert served.provenance.path.kind is PathKind.ROLLUP and len(backend.aggregates) == 1
    slices = slices_of(engine.store, ac, "spend", grain)
    assert len(slices) == 3
    first = next(e for e in slices if e.key == memoized.key)
    assert (first.entry_id, first.version, first.path) == (memoized.entry_id, 1, memoized.path), "kept"


def test_native_days_without_rows_are_kept_so_they_are_not_fetched_again(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    engine.serve_metric("conversions", ("store", "day"), backend=backend, window=SAMPLE_WINDOW)
    # The sample's days plus three weeks before them, which are past but hold no rows.
    wider = DateWindow(OCTOBER.start, SAMPLE_WINDOW.end)
    grain = ("region", "day")  # not a cache_hint of conversions: only its (store, day) days are kept
    first = engine.serve_metric("conversions", grain, backend=backend, window=wider)
    check(first, backend, ac, grain, wider)
    assert [(r.anchor, r.window) for r in backend.aggregates[1:]] == [
        (NATIVE, DateWindow(OCTOBER.start, date(2026, 10, 21)))
    ], "only the empty days are fetched"
    second = engine.serve_metric("conversions", grain, backend=backend, window=wider)
    check(second, backend, ac, grain, wider)
    assert (second.provenance.path.kind, second.provenance.path.source_anchor) == (PathKind.ROLLUP, NATIVE)
    assert len(backend.aggregates) == 2


# -- 2. rollups --------------------------------------------------------------------------------------


def test_coarser_grains_roll_up_from_finer_slices_without_a_backend_call(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    engine.serve_metric("revenue", ("store", "day"), backend=backend, window=NOVEMBER)
    engine.serve_metric("spend", ("campaign", "day"), backend=backend, window=THREE_WEEKS)
    assert len(backend.aggregates) == 2
    backend.aggregates.clear()

    month = engine.serve_metric("revenue", ("region", "month"), backend=backend, window=NOVEMBER)
    check(month, backend, ac, ("region", "month"), NOVEMBER)
    path = month.provenance.path
    assert (path.kind, path.source_anchor) == (PathKind.ROLLUP, ("store", "day"))
    assert set(path.rollup_steps) == {
        FDStep("store", "region", "dimension map"),
        FDStep("day", "month", "calendar"),
    }
    assert backend.extracts == ["stores"], "the store -> region map is read once, to verify and join"
    # (region, month) is a cache_hint grain of revenue: the whole month is kept as one slice.
    assert month.provenance.memoized
    (month_slice,) = slices_of(engine.store, ac, "revenue", ("region", "month"))
    assert month_slice.key.slice_day == NOVEMBER.start
    counted = direct_metric(
        backend.inner, ac, "revenue", ("region", "month"), window=NOVEMBER, with_counts=True
    )
    assert_frame_equal(read_slices(engine.store, [month_slice]), counted)

    by_day = engine.serve_metric("revenue", ("region", "day"), backend=backend, window=NOVEMBER)
    check(by_day, backend, ac, ("region", "day"), NOVEMBER)
    assert by_day.provenance.path.kind is PathKind.ROLLUP
    assert backend.extracts == ["stores"], "the verified map is memoized"

    region = engine.serve_metric("revenue", ("region",), backend=backend, window=NOVEMBER)
    check(region, backend, ac, ("region",), NOVEMBER)
    assert region.provenance.path.kind is PathKind.ROLLUP
    assert region.provenance.path.source_anchor == ("region", "month"), "the cheapest source by rows"
    assert not region.provenance.memoized

    channel = engine.serve_metric("spend", ("channel", "week"), backend=backend, window=THREE_WEEKS)
    check(channel, backend, ac, ("channel", "week"), THREE_WEEKS)
    path = channel.provenance.path
    assert (path.kind, path.source_anchor) == (PathKind.ROLLUP, ("campaign", "day"))
    assert set(path.rollup_steps) == {
        FDStep("campaign", "channel", "dimension map"),
        FDStep("day", "week", "calendar"),
    }
    assert backend.aggregates == [], "every rollup above came from memory"


# -- 3. explain --------------------------------------------------------------------------------------


def test_explain_names_the_chosen_grain_and_why_every_other_memoized_grain_is_not_used(
    engine: MetricEngine, backend: CountingBackend
) -> None:
    five_days = DateWindow(date(2026, 10, 27), date(2026, 10, 31))
    engine.serve_metric("revenue", ("campaign", "day"), backend=backend, window=SAMPLE_WINDOW)
    engine.serve_metric("revenue", ("region", "day"), backend=backend, window=five_days)
    engine.serve_metric("revenue", ("region", "month"), backend=backend, window=NOVEMBER)
    # The two misses above memoized (store, day) over their windows: this one is an exact hit.
    store_day = engine.serve_metric("revenue", ("store", "day"), backend=backend, window=NOVEMBER)
    assert store_day.provenance.path.kind is PathKind.EXACT
    assert [r.anchor for r in backend.aggregates] == [("campaign", "day"), ("store", "day"), ("store", "day")]
    memoized = {e.key.anchor for e in entries_of(engine, Domain.METRIC)}
    assert memoized == {("campaign", "day"), ("region", "day"), ("region", "month"), ("store", "day")}

    first_20 = DateWindow(date(2026, 11, 1), date(2026, 11, 20))
    kind, source, rejections = engine.explain("revenue", ("region", "month"), window=first_20)
    assert (kind, source) == (PathKind.ROLLUP, ("store", "day"))
    reasons = {r.anchor: r.reason for r in rejections}
    assert set(reasons) == memoized - {source}, "a reason for every other memoized grain"
    assert reasons[("campaign", "day")] == "not finer: nothing in (campaign, day) determines region"
    assert reasons[("region", "day")] == "covers 0 of 20 days of the window"
    assert reasons[("region", "month")] == "the window 2026-11-01..2026-11-20 is not made of whole months"
    served = engine.serve_metric(
        "revenue", ("region", "month"), backend=backend, window=first_20, explain=True
    )
    assert (served.provenance.path.kind, served.provenance.path.source_anchor) == (kind, source)
    assert served.rejections == rejections, "serve and explain take the same decision"

    # A miss is fetched at the native grain; the five October days memoized there are reused.
    kind, source, rejections = engine.explain("revenue", ("region", "month"), window=OCTOBER)
    assert (kind, source) == (PathKind.BACKEND, ("store", "day"))
    assert Rejection(("region", "day"), "covers 5 of 31 days of the window") in rejections
    assert Rejection(("store", "day"), "covers 5 of 31 days of the window") in rejections
    assert Rejection(("region", "month"), "covers 0 of 1 months of the window") in rejections

    engine.serve_metric("average_sale", ("store", "day"), backend=backend, window=NOVEMBER)
    kind, source, rejections = engine.explain("average_sale", ("region", "day"), window=NOVEMBER)
    assert (kind, source) == (PathKind.BACKEND, ("region", "day"))
    (avg,) = rejections
    assert avg.anchor == ("store", "day")
    assert avg.reason.startswith("AVG is not partition-invariant")


def test_explain_gives_a_reason_for_the_target_grain_when_its_slices_miss_the_window(
    engine: MetricEngine, backend: CountingBackend
) -> None:
    engine.serve_metric("revenue", ("region", "month"), backend=backend, window=NOVEMBER)
    # The native days it was fetched at, and the target itself (a cache_hint grain).
    assert {e.key.anchor for e in engine.entries(Domain.METRIC)} == {("region", "month"), ("store", "day")}
    kind, source, rejections = engine.explain("revenue", ("region", "month"), window=OCTOBER)
    assert (kind, source) == (PathKind.BACKEND, ("store", "day"))
    assert rejections == (
        Rejection(("region", "month"), "covers 0 of 1 months of the window"),
        Rejection(("store", "day"), "covers 0 of 31 days of the window"),
    ), "a reason for the target grain first, then for every other memoized grain"


# -- 4. partial buckets ------------------------------------------------------------------------------


def test_buckets_only_partly_inside_the_window_are_flagged_and_never_memoized(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    window = DateWindow(date(2026, 10, 15), date(2026, 11, 20))
    grain = ("region", "month")
    served = engine.serve_metric("revenue", grain, backend=backend, window=window)
    expected = check(served, backend, ac, grain, window)
    assert expected.height > 5, "both months have rows"
    assert served.provenance.partial_buckets == (date(2026, 10, 1), date(2026, 11, 1))
    assert [(r.anchor, r.window) for r in backend.aggregates] == [(NATIVE, window)]
    assert served.provenance.memoized, "the native days are whole buckets: they are kept"
    assert len(slices_of(engine.store, ac, "revenue", NATIVE)) == window.days
    assert slices_of(engine.store, ac, "revenue", grain) == []

    # The same window by rollup from memoized days: still partial, still not kept, though
    # (region, month) is one of revenue's cache_hint grains.
    by_day = engine.serve_metric("revenue", ("region", "day"), backend=backend, window=window)
    assert (by_day.provenance.path.kind, by_day.provenance.path.source_anchor) == (PathKind.ROLLUP, NATIVE)
    rolled = engine.serve_metric("revenue", grain, backend=backend, window=window)
    check(rolled, backend, ac, grain, window)
    assert (rolled.provenance.path.kind, rolled.provenance.path.source_anchor) == (
        PathKind.ROLLUP,
        ("region", "day"),
    ), "the cheapest memoized source"
    assert rolled.provenance.partial_buckets == (date(2026, 10, 1), date(2026, 11, 1))
    assert not rolled.provenance.memoized
    assert slices_of(engine.store, ac, "revenue", grain) == []
    assert len(backend.aggregates) == 1


# -- 6. nulls under rollup ---------------------------------------------------------------------------

_OPERATORS = {  # family prefix -> (operator, root column)
    "sum": ("SUM", "revenue"),
    "count": ("COUNT", "revenue"),
    "min": ("MIN", "revenue"),
    "max": ("MAX", "revenue"),
    "any": ("BOOL_OR", "is_returned"),
    "all": ("BOOL_AND", "is_returned"),
}
_TREATMENTS = {
    "skip": ("skip", "skip"),
    "propagate": ("propagate", "propagate"),
    "impute": ("{impute: 1.5}", "{impute: false}"),
}
NULL_FAMILIES = [f"{op}_{mvt}" for op in _OPERATORS for mvt in _TREATMENTS]


def _null_families_yaml() -> str:
    text = ""
    for prefix, (operator, column) in _OPERATORS.items():
        for mvt, (numeric, boolean) in _TREATMENTS.items():
            treatment = boolean if column == "is_returned" else numeric
            text += (
                f"  - name: {prefix}_{mvt}\n"
                f"    family_root: {{schema: transactions, column: {column}}}\n"
                f"    ip_reducers:\n"
                f"      - operator: {operator}\n"
                f"        a_block: [time]\n"
                f"    missing_values: {treatment}\n"
                f"    base_grain: [store, day]\n"
            )
    return text


def _null_frames() -> dict[str, pl.DataFrame]:
    """Groups that are all NULL, partly NULL, complete, of an unknown store (NULL region), and a
    store (and a month) without rows; one row of another tenant that the AC's filter drops."""
    d = date
    rows = [  # event_date, store_id, revenue, is_returned, tenant
        (d(2026, 10, 15), "S3", 3.0, False, TENANT_ID),
        (d(2026, 10, 16), "S1", None, None, TENANT_ID),  # north, October: all NULL
        (d(2026, 11, 2), "S1", None, None, TENANT_ID),  # S1 on the 2nd: all NULL
        (d(2026, 11, 2), "S1", None, None, TENANT_ID),
        (d(2026, 11, 3), "S1", 5.0, None, TENANT_ID),  # S1 on the 3rd: partly NULL
        (d(2026, 11, 3), "S1", None, True, TENANT_ID),
        (d(2026, 11, 2), "S2", 1.0, False, TENANT_ID),  # S2: complete
        (d(2026, 11, 2), "S2", 2.0, False, TENANT_ID),
        (d(2026, 11, 2), "S3", None, None, TENANT_ID),  # south, November: all NULL
        (d(2026, 11, 4), "S9", 4.0, True, TENANT_ID),  # not in stores: region NULL
        (d(2026, 11, 5), "S9", None, False, TENANT_ID),
        (d(2026, 11, 2), "S2", 100.0, True, "other"),
    ]
    n = len(rows)
    transactions = pl.DataFrame(
        {
            "txn_id": list(range(1, n + 1)),
            "tenant_id": [r[4] for r in rows],
            "project_id": [PROJECT_ID] * n,
            "event_date": [r[0] for r in rows],
            "store_id": [r[1] for r in rows],
            "campaign_id": ["C1"] * n,
            "customer_id": ["CU1"] * n,
            "revenue": [r[2] for r in rows],
            "spend": [1.0] * n,
            "conversions": [1] * n,
            "is_returned": [r[3] for r in rows],
            "updated_at": [datetime(2026, 11, 10)] * n,
        },
        schema_overrides={"revenue": pl.Float64, "is_returned": pl.Boolean, "updated_at": pl.Datetime("us")},
    )
    stores = pl.DataFrame(
        {
            "store_id": ["S1", "S2", "S3", "S4"],
            "store_name": ["One", "Two", "Three", "Four"],
            "region": ["north", "north", "south", "east"],
            "opened_on": [date(2020, 1, 1)] * 4,
        }
    )
    campaigns = pl.DataFrame({"campaign_id": ["C1"], "campaign_name": ["Only"], "channel": ["search"]})
    return {"transactions": transactions, "stores": stores, "campaigns": campaigns}


@pytest.fixture
def null_ac(tmp_path: Path) -> AnalyticalContext:
    source = tmp_path / "null-source"
    write_parquet(_null_frames(), source)
    path = write_ac_variant(
        tmp_path / "acs", {"metric_families:\n": "metric_families:\n" + _null_families_yaml()}
    )
    return load_ac(path, source_path=source)


@pytest.fixture
def null_engine(
    null_ac: AnalyticalContext, settings: Settings
) -> Iterator[tuple[MetricEngine, CountingBackend]]:
    engine = MetricEngine.open(null_ac, settings, today=fixed_today)
    backend = CountingBackend(backend_for(null_ac))
    yield engine, backend
    engine.close()
    backend.close()


COARSE = [
    (("region", "month"), Q4),
    (("region", "quarter"), Q4),
    (("region",), Q4),
    ((), Q4),
    ((), DECEMBER),  # no rows at all: one row, as SQL's aggregate without GROUP BY
]


def test_rollups_over_nulls_give_the_sql_answer_under_every_treatment(
    null_ac: AnalyticalContext, null_engine: tuple[MetricEngine, CountingBackend]
) -> None:
    engine, backend = null_engine
    answers: dict[tuple[str, tuple[str, ...], DateWindow], pl.DataFrame] = {}
    for family in NULL_FAMILIES:
        engine.serve_metric(family, ("store", "day"), backend=backend, window=Q4)
        assert len(backend.aggregates) == 1
        backend.aggregates.clear()
        for anchor, window in COARSE:
            served = engine.serve_metric(family, anchor, backend=backend, window=window)
            assert served.provenance.path.kind is PathKind.ROLLUP, (family, anchor)
            answers[family, anchor, window] = check(served, backend, null_ac, anchor, window)
        assert backend.aggregates == [], f"{family}: every coarse grain came from the (store, day) slices"

    # The data does exercise the cases Polars' own sum gets wrong.
    def value(family: str, region: str | None, month: date) -> object:
        frame = answers[family, ("region", "month"), Q4]
        matched = frame.filter(pl.col("region").eq_missing(region), pl.col("month") == month)
        return matched[family].item()

    november = date(2026, 11, 1)
    assert value("sum_skip", "north", november) == 8.0
    assert value("sum_skip", "south", november) is None, "SUM over only NULLs is NULL, not 0"
    assert value("sum_skip", None, november) == 4.0, "the unknown store's rows stay, under a NULL region"
    assert value("sum_propagate", "north", november) is None, "propagate keeps its NULL through the rollup"
    assert value("sum_propagate", "south", date(2026, 10, 1)) == 3.0
    assert value("sum_impute", "north", november) == 12.5
    assert value("count_skip", "south", november) == 0
    assert value("any_skip", "south", november) is None
    assert value("any_impute", "south", november) is False
    assert value("all_skip", "north", november) is False
    for family in ("sum_skip", "min_skip", "any_skip"):
        assert answers[family, (), DECEMBER][family].to_list() == [None]
    assert answers["count_skip", (), DECEMBER]["count_skip"].to_list() == [0]
    assert "east" not in answers["sum_skip", ("region",), Q4]["region"].to_list(), "no rows, no group"


# -- 7. a violated FD edge ---------------------------------------------------------------------------


def test_a_store_in_two_regions_is_a_typed_error_and_nothing_is_memoized(
    tmp_path: Path, sample_frames: dict[str, pl.DataFrame], settings: Settings
) -> None:
    stores = sample_frames["stores"]
    first = stores.row(0, named=True)
    assert first["store_id"] == "S001" and first["region"] == "north"
    doubled = pl.concat([stores, pl.DataFrame([{**first, "region": "south"}], schema=stores.schema)])
    source = tmp_path / "violated"
    write_parquet({**sample_frames, "stores": doubled}, source)
    ac = load_ac(RETAIL_YAML, source_path=source)
    backend = CountingBackend(backend_for(ac))
    engine = MetricEngine.open(ac, settings, today=fixed_today)
    try:
        served = engine.serve_metric("revenue", ("store", "day"), backend=backend, window=SAMPLE_WINDOW)
        check(served, backend, ac, ("store", "day"), SAMPLE_WINDOW)
        before = [(e.key, e.version, e.path) for e in engine.entries()]

        with pytest.raises(FDViolationError, match=r"store -> region.*'S001' -> 'north', 'south'"):
            engine.serve_metric("revenue", ("region", "day"), backend=backend, window=SAMPLE_WINDOW)

        after = [(e.key, e.version, e.path) for e in engine.entries()]
        assert after == before, "no (region, day) slice and no dimension map is memoized"
        assert slices_of(engine.store, ac, "revenue", ("region", "day")) == []
        assert len(backend.aggregates) == 1

        # A miss at (region, day) is fetched at (store, day) and rolled along the same map: the
        # same typed error, where a backend's join would have counted S001's rows in both regions.
        fresh = MetricEngine.open(ac, make_settings(tmp_path / "fresh"), today=fixed_today)
        try:
            with pytest.raises(FDViolationError, match=r"store -> region.*'S001' -> 'north', 'south'"):
                fresh.serve_metric("revenue", ("region", "day"), backend=backend, window=SAMPLE_WINDOW)
            # Only the native days (right whatever the map) were kept, before the rollup failed.
            assert {e.key.anchor for e in fresh.entries()} == {("store", "day")}
            assert [r.anchor for r in backend.aggregates] == [("store", "day")] * 2
        finally:
            fresh.close()
    finally:
        engine.close()
        backend.close()
