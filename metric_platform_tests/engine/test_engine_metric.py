"""The engine's METRIC domain end to end: memoization per day slice, and the memo policy (what is
served but deliberately not memoized, what is pinned, what is recomputed)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.engine import DEFAULT_LIMITS, MetricEngine
from metric_platform.engine.serving.buckets import partition_window
from metric_platform.engine.serving.types import PathKind
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain
from metric_platform.errors import UnknownNameError
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.semantics.types import MissingValueKind, MissingValueTreatment
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import (
    SAMPLE_WINDOW,
    TODAY,
    CountingBackend,
    direct_metric,
    entries_of,
    fetch_grain,
    fixed_today,
    miss_grains,
    read_slices,
    slices_of,
    sorted_frame,
    write_ac_variant,
)

NOVEMBER = DateWindow(date(2026, 11, 1), date(2026, 11, 30))
YEAR_2026 = DateWindow(date(2026, 1, 1), date(2026, 12, 31))


def window_days(window: DateWindow) -> list[date]:
    return [window.start + timedelta(days=i) for i in range(window.days)]


def test_every_family_is_computed_once_per_day_slice_then_served_from_memory(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    default = partition_window(ac, TODAY)
    assert (default.start, default.end) == (date(2026, 1, 1), TODAY), "the default window uses today="
    families = list(ac.families.values())
    first = {
        f.name: engine.serve(Domain.METRIC, f.name, f.base_grain, backend=backend).collect() for f in families
    }
    assert len(backend.aggregates) == len(ac.families), "one backend call per family"
    assert all(r.with_counts and r.window == default for r in backend.aggregates)
    # Fetched at the native grain (no joins, by day); the rest is rolled up in Polars.
    assert [r.anchor for r in backend.aggregates] == [fetch_grain(ac, f.name, f.base_grain) for f in families]
    memoized = {f.name: miss_grains(ac, f.name, f.base_grain) for f in families}
    assert memoized["revenue"] == {("store", "day"), ("region", "day")}, "a cache_hint target is kept too"
    assert memoized["transaction_count"] == {("store", "day")}, "(region, day) is not one of its cache_hints"
    before = {e.key: e for e in entries_of(engine, Domain.METRIC)}
    assert {(e.key.dataset_id, e.key.anchor) for e in before.values()} == {
        (name, grain) for name, grains in memoized.items() for grain in grains
    }
    rows = sum(len(grains) for grains in memoized.values()) * default.days
    assert len(before) == rows, "one manifest row per (family, grain, day)"
    backend.aggregates.clear()

    read: dict[str, tuple[str, ...]] = {}
    for family in families:
        grain = family.base_grain
        served = engine.serve_metric(family.name, grain, backend=backend)
        frame = served.frame.collect()
        assert frame.columns == [*grain, family.name]
        expected = direct_metric(backend.inner, ac, family.name, grain)
        assert_frame_equal(sorted_frame(frame, grain), expected)
        assert_frame_equal(sorted_frame(first[family.name], grain), expected)
        path = served.provenance.path
        read[family.name] = path.source_anchor
        if grain in memoized[family.name]:
            assert (path.kind, path.source_anchor) == (PathKind.EXACT, grain), family.name
        else:  # rolled up again from the day slices it was fetched at
            assert (path.kind, path.source_anchor) == (PathKind.ROLLUP, fetch_grain(ac, family.name, grain))
        for memo_grain in memoized[family.name]:
            slices = slices_of(engine.store, ac, family.name, memo_grain)
            assert [e.key.slice_day for e in slices] == window_days(default)
            with_counts = direct_metric(
                backend.inner, ac, family.name, memo_grain, window=default, with_counts=True
            )
            assert_frame_equal(read_slices(engine.store, slices), with_counts)
    assert backend.aggregates == [], "the second round must come from the slices"
    for entry in entries_of(engine, Domain.METRIC):
        assert entry.version == 1
        was_read = entry.key.anchor == read[entry.key.dataset_id]
        assert entry.access_count == before[entry.key].access_count + was_read
        assert entry.meta.family_fingerprint == ac.family(entry.key.dataset_id).fingerprint


SINGLE_BUCKETS = pytest.mark.parametrize(
    ("anchor", "window"), [(("year",), YEAR_2026), (("month",), NOVEMBER)], ids=["one-year", "one-month"]
)


@SINGLE_BUCKETS
def test_a_single_row_result_is_served_but_not_memoized_unless_pinned(
    engine: MetricEngine,
    backend: CountingBackend,
    ac: AnalyticalContext,
    anchor: tuple[str, ...],
    window: DateWindow,
) -> None:
    # COUNT_DISTINCT is fetched at the target itself: only the singleton rule decides.
    expected = direct_metric(backend.inner, ac, "unique_customers", anchor, window=window)
    for call in (1, 2):
        served = engine.serve_metric("unique_customers", anchor, backend=backend, window=window)
        assert served.provenance.partial_buckets == (), "one whole bucket: only the singleton rule applies"
        assert served.provenance.path.source_anchor == anchor
        assert_frame_equal(served.frame.collect(), expected)
        assert expected.height == 1 and not served.provenance.memoized
        assert len(backend.aggregates) == call, "a singleton is recomputed, never stored"
    assert entries_of(engine, Domain.METRIC) == []

    pinned = engine.serve_metric("unique_customers", anchor, backend=backend, window=window, pin=True)
    assert pinned.provenance.memoized
    (entry,) = entries_of(engine, Domain.METRIC)
    assert entry.pinned and entry.key.slice_day == window.start
    again = engine.serve_metric("unique_customers", anchor, backend=backend, window=window)
    assert again.provenance.path.kind is PathKind.EXACT
    assert_frame_equal(again.frame.collect(), expected)
    assert len(backend.aggregates) == 3


@SINGLE_BUCKETS
def test_a_single_row_result_of_a_rollable_family_comes_from_memoized_day_slices(
    engine: MetricEngine,
    backend: CountingBackend,
    ac: AnalyticalContext,
    anchor: tuple[str, ...],
    window: DateWindow,
) -> None:
    expected = direct_metric(backend.inner, ac, "revenue", anchor, window=window)
    assert expected.height == 1
    first = engine.serve_metric("revenue", anchor, backend=backend, window=window)
    path = first.provenance.path
    assert (path.kind, path.source_anchor, path.backend_ranges) == (PathKind.BACKEND, ("day",), (window,))
    assert first.provenance.memoized, "the day slices are kept"
    assert_frame_equal(first.frame.collect(), expected)
    days = entries_of(engine, Domain.METRIC)
    assert {e.key.anchor for e in days} == {("day",)} and len(days) == window.days
    assert not any(e.pinned for e in days)

    second = engine.serve_metric("revenue", anchor, backend=backend, window=window)
    assert (second.provenance.path.kind, second.provenance.path.source_anchor) == (PathKind.ROLLUP, ("day",))
    assert not second.provenance.memoized, "a singleton rollup is not kept"
    assert_frame_equal(second.frame.collect(), expected)

    pinned = engine.serve_metric("revenue", anchor, backend=backend, window=window, pin=True)
    assert pinned.provenance.path.kind is PathKind.ROLLUP and pinned.provenance.memoized
    (entry,) = slices_of(engine.store, ac, "revenue", anchor)
    assert entry.pinned and entry.key.slice_day == window.start
    assert not any(e.pinned for e in slices_of(engine.store, ac, "revenue", ("day",))), "only the target"
    again = engine.serve_metric("revenue", anchor, backend=backend, window=window)
    assert again.provenance.path.kind is PathKind.EXACT
    assert_frame_equal(again.frame.collect(), expected)
    assert len(backend.aggregates) == 1


def test_a_result_without_a_time_dimension_comes_from_day_slices_and_is_not_memoized_itself(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    for anchor in [(), ("region",)]:
        served = engine.serve_metric("revenue", anchor, backend=backend, window=SAMPLE_WINDOW)
        expected = direct_metric(backend.inner, ac, "revenue", anchor, window=SAMPLE_WINDOW)
        assert_frame_equal(sorted_frame(served.frame.collect(), anchor), expected)
    # () was fetched at (day) and (region) at its native (store, day): both kept per day for later
    # windows; (region) is a cache_hint of revenue, but without a time dimension it is not kept.
    assert [(r.anchor, r.window) for r in backend.aggregates] == [
        (("day",), SAMPLE_WINDOW),
        (("store", "day"), SAMPLE_WINDOW),
    ]
    grains = {e.key.anchor for e in entries_of(engine, Domain.METRIC)}
    assert grains == {("day",), ("store", "day")}

    inner = DateWindow(date(2026, 11, 3), date(2026, 11, 9))
    for anchor in [(), ("region",)]:
        served = engine.serve_metric("revenue", anchor, backend=backend, window=inner)
        assert served.provenance.path.kind is PathKind.ROLLUP
        expected = direct_metric(backend.inner, ac, "revenue", anchor, window=inner)
        assert_frame_equal(sorted_frame(served.frame.collect(), anchor), expected)
    assert len(backend.aggregates) == 2, "a sub-window is answered from the day slices"


def test_an_mvt_override_is_served_but_never_replaces_the_family_slices(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    propagate = MissingValueTreatment(MissingValueKind.PROPAGATE)
    grain = ac.family("spend").base_grain
    expected = direct_metric(backend.inner, ac, "spend", grain, window=SAMPLE_WINDOW, mvt=propagate)
    assert expected["spend"].null_count() > 0, "the sample has null spend, so propagate differs from impute"

    overridden = engine.serve(
        Domain.METRIC, "spend", grain, mvt=propagate, backend=backend, window=SAMPLE_WINDOW
    ).collect()
    assert_frame_equal(sorted_frame(overridden, grain), expected)
    assert entries_of(engine, Domain.METRIC) == []

    family_frame = engine.serve(
        Domain.METRIC, "spend", grain, backend=backend, window=SAMPLE_WINDOW
    ).collect()
    assert family_frame["spend"].null_count() == 0, "the family imputes 0.0"
    before = entries_of(engine, Domain.METRIC)
    assert len(before) == SAMPLE_WINDOW.days

    again = engine.serve(Domain.METRIC, "spend", grain, mvt=propagate, backend=backend, window=SAMPLE_WINDOW)
    assert_frame_equal(sorted_frame(again.collect(), grain), expected)
    assert len(backend.aggregates) == 3, "an override is never served from the family's slices"
    after = entries_of(engine, Domain.METRIC)
    assert [(e.key, e.version, e.path, e.meta.mvt) for e in after] == [
        (e.key, e.version, e.path, "impute") for e in before
    ]
    stored = read_slices(engine.store, after).drop("__rows", "__nonnull")
    assert_frame_equal(stored, sorted_frame(family_frame, grain))


def test_a_changed_family_is_recomputed_not_served_from_its_old_slices(
    *,
    tmp_path: Path,
    sample_dir: Path,
    settings: Settings,
    ac: AnalyticalContext,
    engine: MetricEngine,
    backend: CountingBackend,
) -> None:
    grain = ac.family("revenue").base_grain
    old_frame = engine.serve(Domain.METRIC, "revenue", grain, backend=backend, window=SAMPLE_WINDOW).collect()
    engine.serve(
        Domain.METRIC,
        "conversions",
        ac.family("conversions").base_grain,
        backend=backend,
        window=SAMPLE_WINDOW,
    )
    old = {e.key: e for e in entries_of(engine, Domain.METRIC)}

    path = write_ac_variant(
        tmp_path / "acs",
        {
            "  - name: revenue\n    family_root: {schema: transactions, column: revenue}": (
                "  - name: revenue\n    family_root: {schema: transactions, column: spend}"
            )
        },
    )
    changed = load_ac(path, source_path=sample_dir)
    assert changed.family("revenue").fingerprint != ac.family("revenue").fingerprint
    changed_backend = CountingBackend(backend_for(changed))
    changed_engine = MetricEngine.open(changed, settings, today=fixed_today)
    try:
        served = changed_engine.serve(
            Domain.METRIC, "revenue", grain, backend=changed_backend, window=SAMPLE_WINDOW
        ).collect()
        changed_engine.serve(
            Domain.METRIC,
            "conversions",
            changed.family("conversions").base_grain,
            backend=changed_backend,
            window=SAMPLE_WINDOW,
        )
    finally:
        changed_engine.close()
        changed_backend.close()

    assert [r.family.name for r in changed_backend.aggregates] == ["revenue"], "only the changed family"
    expected = direct_metric(backend.inner, changed, "revenue", grain, window=SAMPLE_WINDOW)
    assert_frame_equal(sorted_frame(served, grain), expected)
    assert not sorted_frame(served, grain).equals(sorted_frame(old_frame, grain))
    for entry in entries_of(engine, Domain.METRIC):
        if entry.key.dataset_id == "revenue":
            assert entry.version == old[entry.key].version + 1
            assert entry.meta.family_fingerprint == changed.family("revenue").fingerprint
        else:
            assert entry.version == old[entry.key].version
    slices = slices_of(engine.store, ac, "revenue", grain)
    assert len(slices) == SAMPLE_WINDOW.days
    counted = direct_metric(backend.inner, changed, "revenue", grain, window=SAMPLE_WINDOW, with_counts=True)
    assert_frame_equal(read_slices(engine.store, slices), counted)


def test_columns_follow_the_requested_anchor_order(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    assert ac.canonical_grain(("day", "region")) == ("region", "day")
    expected = direct_metric(backend.inner, ac, "revenue", ("day", "region"), window=SAMPLE_WINDOW)

    served = [
        engine.serve_metric("revenue", anchor, backend=backend, window=SAMPLE_WINDOW)
        for anchor in [("day", "region"), ("day", "region"), ("region", "day")]
    ]
    frames = [s.frame.collect() for s in served]

    assert [f.columns for f in frames] == [
        ["day", "region", "revenue"],
        ["day", "region", "revenue"],
        ["region", "day", "revenue"],
    ]
    assert [s.provenance.path.kind for s in served] == [PathKind.BACKEND, PathKind.EXACT, PathKind.EXACT]
    for frame in frames:
        assert_frame_equal(frame.select(expected.columns).sort(["day", "region"]), expected)
    assert len(backend.aggregates) == 1, "both orders share the canonical slices"
    assert backend.aggregates[0].anchor == ("store", "day"), "fetched at the native grain"
    grains = {e.key.anchor for e in entries_of(engine, Domain.METRIC)}
    assert grains == {("region", "day"), ("store", "day")}, "(region, day) is a cache_hint grain"


def test_unknown_names_fail_typed_before_any_backend_call(
    engine: MetricEngine, backend: CountingBackend
) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown dimension 'regoin'.*did you mean 'region'"):
        engine.serve(Domain.METRIC, "revenue", ("regoin", "day"), backend=backend)
    with pytest.raises(UnknownNameError, match=r"unknown metric family 'revenu'.*did you mean 'revenue'"):
        engine.serve(Domain.METRIC, "revenu", ("day",), backend=backend)
    assert backend.aggregates == []


def test_an_unreachable_dimension_fails_before_any_backend_call(
    tmp_path: Path, sample_dir: Path, settings: Settings
) -> None:
    # A family rooted at stores: "customer" lives on transactions, which stores has no join to.
    path = write_ac_variant(
        tmp_path / "acs",
        {
            "metric_families:\n": (
                "metric_families:\n"
                "  - name: store_count\n"
                "    family_root: {schema: stores, column: store_id}\n"
                "    ip_reducers:\n"
                "      - operator: COUNT\n"
                "        a_block: [geography]\n"
                "    base_grain: [region, day]\n"
            ),
            "columns: {transactions: event_date}": "columns: {transactions: event_date, stores: opened_on}",
        },
    )
    variant = load_ac(path, source_path=sample_dir)
    counting = CountingBackend(backend_for(variant))
    variant_engine = MetricEngine.open(variant, settings, today=fixed_today)
    try:
        with pytest.raises(UnknownNameError, match=r"'customer' cannot be reached from schema 'stores'"):
            variant_engine.serve(Domain.METRIC, "store_count", ("region", "customer"), backend=counting)
        assert counting.aggregates == []
        assert variant_engine.entries() == []
    finally:
        variant_engine.close()
        counting.close()


def test_a_result_over_the_byte_cap_is_served_and_recommended_not_memoized_unless_pinned(
    ac: AnalyticalContext, settings: Settings, backend: CountingBackend
) -> None:
    capped = MetricEngine(
        ac,
        EntryStore.from_settings(settings),
        limits=replace(DEFAULT_LIMITS, entry_byte_cap=10),
        today=fixed_today,
    )
    try:
        grain = ac.family("revenue").base_grain
        expected = direct_metric(backend.inner, ac, "revenue", grain, window=SAMPLE_WINDOW)
        # Each miss is over the cap twice: the (store, day) fetch and the (region, day) cache_hint.
        over = ["revenue at (store, day) over 30 bucket(s)", "revenue at (region, day) over 30 bucket(s)"]
        for call in (1, 2):
            served = capped.serve_metric("revenue", grain, backend=backend, window=SAMPLE_WINDOW)
            frame = served.frame.collect()
            assert frame.height > 1 and frame.estimated_size() > 10
            assert_frame_equal(sorted_frame(frame, grain), expected)
            assert len(backend.aggregates) == call and not served.provenance.memoized
            notes = [r[: len(o)] for r, o in zip(capped.recommendations, over * call, strict=True)]
            assert notes == over * call
        assert capped.entries(Domain.METRIC) == []
        assert all("10-byte entry cap" in r for r in capped.recommendations)

        pinned = capped.serve_metric("revenue", grain, backend=backend, window=SAMPLE_WINDOW, pin=True)
        assert pinned.provenance.memoized, "a pin overrides the cap"
        # ...for the pinned target only: its unpinned (store, day) source is still capped.
        assert len(capped.recommendations) == 5 and capped.recommendations[-1].startswith(over[0])
        assert {e.key.anchor for e in capped.entries(Domain.METRIC)} == {grain}
        slices = slices_of(capped.store, ac, "revenue", grain)
        assert len(slices) == SAMPLE_WINDOW.days and all(e.pinned for e in slices)
        (fd_map,) = capped.entries(Domain.QM)  # the verified store -> region map, not pinned
        assert (fd_map.key.dataset_id, fd_map.key.anchor) == ("fd_map", ("store", "region"))
        assert capped.store.total_bytes(ac.name, evictable_only=True) == fd_map.byte_size
        again = capped.serve_metric("revenue", grain, backend=backend, window=SAMPLE_WINDOW)
        assert again.provenance.path.kind is PathKind.EXACT and len(backend.aggregates) == 3
        assert_frame_equal(sorted_frame(again.frame.collect(), grain), expected)
    finally:
        capped.close()


def test_a_pinned_miss_pins_its_target_never_the_native_grain_it_was_fetched_at(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    grain = ("region", "month")  # not a cache_hint of conversions: only the pin keeps it
    served = engine.serve_metric("conversions", grain, backend=backend, window=NOVEMBER, pin=True)
    assert (served.provenance.path.kind, served.provenance.path.source_anchor) == (
        PathKind.BACKEND,
        ("store", "day"),
    )
    assert served.provenance.memoized
    (target,) = slices_of(engine.store, ac, "conversions", grain)
    assert target.pinned and target.key.slice_day == NOVEMBER.start
    native = slices_of(engine.store, ac, "conversions", ("store", "day"))
    assert len(native) == NOVEMBER.days and not any(e.pinned for e in native), "evictable"
    counted = direct_metric(backend.inner, ac, "conversions", grain, window=NOVEMBER, with_counts=True)
    assert_frame_equal(read_slices(engine.store, [target]), counted)

    # Without a time dimension there is nothing to pin: only the evictable native days are kept.
    engine.serve_metric("conversions", ("region",), backend=backend, window=NOVEMBER, pin=True)
    assert [e.key.anchor for e in entries_of(engine, Domain.METRIC) if e.pinned] == [grain]
    assert len(backend.aggregates) == 1, "(region,) was rolled up from the native days"


OCTOBER = DateWindow(date(2026, 10, 1), date(2026, 10, 31))
OCTOBER_NOVEMBER = DateWindow(date(2026, 10, 1), date(2026, 11, 30))


def test_a_miss_does_not_refetch_the_buckets_memoized_at_its_target(
    ac: AnalyticalContext, settings: Settings, backend: CountingBackend
) -> None:
    grain = ("region", "month")  # a cache_hint grain of revenue
    small = direct_metric(backend.inner, ac, "revenue", grain, window=OCTOBER_NOVEMBER, with_counts=True)
    large = direct_metric(backend.inner, ac, "revenue", ("store", "day"), window=OCTOBER, with_counts=True)
    cap = 2 * int(small.estimated_size())
    assert large.estimated_size() > cap, "the native grain must be over the cap, the target under it"
    capped = MetricEngine(
        ac,
        EntryStore.from_settings(settings),
        limits=replace(DEFAULT_LIMITS, entry_byte_cap=cap),
        today=fixed_today,
    )
    try:
        capped.serve_metric("revenue", grain, backend=backend, window=OCTOBER)
        assert {e.key.anchor for e in capped.entries(Domain.METRIC)} == {grain}
        (october,) = slices_of(capped.store, ac, "revenue", grain)
        backend.aggregates.clear()

        served = capped.serve_metric("revenue", grain, backend=backend, window=OCTOBER_NOVEMBER)
        expected = direct_metric(backend.inner, ac, "revenue", grain, window=OCTOBER_NOVEMBER)
        assert_frame_equal(sorted_frame(served.frame.collect(), grain), expected)
        assert [r.window for r in backend.aggregates] == [NOVEMBER], "only November is computed"
        slices = slices_of(capped.store, ac, "revenue", grain)
        assert [e.key.slice_day for e in slices] == [OCTOBER.start, NOVEMBER.start]
        assert (slices[0].version, slices[0].path) == (1, october.path), "October's slice is kept"
    finally:
        capped.close()


def test_recompute_calls_the_backend_despite_the_slices_and_replaces_them(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    grain = ("region", "day")
    engine.serve_metric("revenue", grain, backend=backend, window=SAMPLE_WINDOW)
    before = {e.key: e for e in slices_of(engine.store, ac, "revenue", grain)}

    served = engine.serve_metric("revenue", grain, backend=backend, window=SAMPLE_WINDOW, recompute=True)

    assert served.provenance.path.kind is PathKind.BACKEND and served.provenance.memoized
    assert [r.window for r in backend.aggregates] == [SAMPLE_WINDOW, SAMPLE_WINDOW]
    after = slices_of(engine.store, ac, "revenue", grain)
    assert {e.key for e in after} == set(before)
    assert all(e.version == before[e.key].version + 1 and e.path != before[e.key].path for e in after)
    expected = direct_metric(backend.inner, ac, "revenue", grain, window=SAMPLE_WINDOW)
    assert_frame_equal(sorted_frame(served.frame.collect(), grain), expected)
    counted = direct_metric(backend.inner, ac, "revenue", grain, window=SAMPLE_WINDOW, with_counts=True)
    assert_frame_equal(read_slices(engine.store, after), counted)


def test_a_non_invariant_family_at_a_coarser_grain_goes_to_the_backend(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    engine.serve_metric("average_sale", ("store", "day"), backend=backend, window=SAMPLE_WINDOW)
    for anchor in [("region", "day"), ("region",)]:
        served = engine.serve_metric("average_sale", anchor, backend=backend, window=SAMPLE_WINDOW)
        path = served.provenance.path
        assert (path.kind, path.source_anchor) == (PathKind.BACKEND, anchor)
        assert served.provenance.not_further_rollable
        assert backend.aggregates[-1].anchor == anchor
        expected = direct_metric(backend.inner, ac, "average_sale", anchor, window=SAMPLE_WINDOW)
        assert_frame_equal(sorted_frame(served.frame.collect(), anchor), expected)
    assert len(backend.aggregates) == 3
    # (region, day) has a time dimension, so it is memoized per day; (region,) is not memoized.
    grains = {e.key.anchor for e in entries_of(engine, Domain.METRIC)}
    assert grains == {("store", "day"), ("region", "day")}
