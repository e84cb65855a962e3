"""The engine's METRIC domain end to end: exact-entry memoization and what is deliberately not memoized."""

from __future__ import annotations

from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import AggregateRequest
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain
from metric_platform.errors import UnknownNameError
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.semantics.types import MissingValueKind, MissingValueTreatment
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import (
    METRIC_FAMILIES,
    CountingBackend,
    direct_metric,
    entries_of,
    write_ac_variant,
)


def test_every_family_is_computed_once_then_served_from_memory(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    first = {
        f.name: engine.serve(Domain.METRIC, f.name, f.base_grain, backend=backend).collect()
        for f in ac.families.values()
    }
    assert len(backend.aggregates) == METRIC_FAMILIES
    before = {e.key.dataset_id: e for e in entries_of(engine, Domain.METRIC)}
    assert set(before) == set(ac.families)
    backend.aggregates.clear()

    for family in ac.families.values():
        grain = family.base_grain
        served = engine.serve(Domain.METRIC, family.name, grain, backend=backend).collect()
        assert served.columns == [*grain, family.name]
        expected = direct_metric(backend.inner, ac, family.name, grain)
        assert_frame_equal(served.sort(list(grain)), expected)
        assert_frame_equal(first[family.name].sort(list(grain)), expected)
    assert backend.aggregates == [], "the second round must come from the entries"
    for entry in entries_of(engine, Domain.METRIC):
        assert entry.version == 1
        assert entry.access_count == before[entry.key.dataset_id].access_count + 1
        assert entry.meta.family_fingerprint == ac.family(entry.key.dataset_id).fingerprint


@pytest.mark.parametrize("anchor", [(), ("year",)], ids=["empty-anchor", "one-year"])
def test_a_single_row_result_is_served_but_not_memoized(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext, anchor: tuple[str, ...]
) -> None:
    for call in (1, 2):
        served = engine.serve(Domain.METRIC, "revenue", anchor, backend=backend).collect()
        assert served.height == 1
        assert_frame_equal(served, direct_metric(backend.inner, ac, "revenue", anchor))
        assert len(backend.aggregates) == call, "a singleton is recomputed, never stored"
    assert entries_of(engine, Domain.METRIC) == []


def test_an_mvt_override_is_served_but_never_replaces_the_family_entry(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    propagate = MissingValueTreatment(MissingValueKind.PROPAGATE)
    grain = ac.family("spend").base_grain
    expected = backend.inner.aggregate(AggregateRequest(ac.family("spend"), grain, mvt=propagate)).collect()
    assert expected["spend"].null_count() > 0, "the sample has null spend, so propagate differs from impute"

    overridden = engine.serve(Domain.METRIC, "spend", grain, mvt=propagate, backend=backend).collect()
    assert_frame_equal(overridden.sort(list(grain)), expected.sort(list(grain)))
    assert entries_of(engine, Domain.METRIC) == []

    family_frame = engine.serve(Domain.METRIC, "spend", grain, backend=backend).collect()
    assert family_frame["spend"].null_count() == 0, "the family imputes 0.0"
    (entry,) = entries_of(engine, Domain.METRIC)

    again = engine.serve(Domain.METRIC, "spend", grain, mvt=propagate, backend=backend).collect()
    assert_frame_equal(again.sort(list(grain)), expected.sort(list(grain)))
    assert len(backend.aggregates) == 3, "an override is never served from the family's entry"
    (after,) = entries_of(engine, Domain.METRIC)
    assert (after.version, after.path, after.meta.mvt) == (entry.version, entry.path, "impute")
    assert_frame_equal(engine.store.scan(after).collect(), family_frame)


def test_a_changed_family_is_recomputed_not_served_from_its_old_entry(
    *,
    tmp_path: Path,
    sample_dir: Path,
    settings: Settings,
    ac: AnalyticalContext,
    engine: MetricEngine,
    backend: CountingBackend,
) -> None:
    grain = ac.family("revenue").base_grain
    old_frame = engine.serve(Domain.METRIC, "revenue", grain, backend=backend).collect()
    engine.serve(Domain.METRIC, "conversions", ac.family("conversions").base_grain, backend=backend)
    old = {e.key.dataset_id: e for e in entries_of(engine, Domain.METRIC)}

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
    changed_engine = MetricEngine.open(changed, settings)
    try:
        served = changed_engine.serve(Domain.METRIC, "revenue", grain, backend=changed_backend).collect()
        changed_engine.serve(
            Domain.METRIC, "conversions", changed.family("conversions").base_grain, backend=changed_backend
        )
    finally:
        changed_engine.close()
        changed_backend.close()

    assert len(changed_backend.aggregates) == 1, "only the changed family is recomputed"
    expected = direct_metric(backend.inner, changed, "revenue", grain)
    assert_frame_equal(served.sort(list(grain)), expected)
    assert not served.sort(list(grain)).equals(old_frame.sort(list(grain)))
    entry = next(e for e in entries_of(engine, Domain.METRIC) if e.key.dataset_id == "revenue")
    assert entry.version == old["revenue"].version + 1
    assert entry.meta.family_fingerprint == changed.family("revenue").fingerprint


def test_columns_follow_the_requested_anchor_order(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    assert ac.canonical_grain(("day", "region")) == ("region", "day")
    expected = direct_metric(backend.inner, ac, "revenue", ("day", "region"))

    computed = engine.serve(Domain.METRIC, "revenue", ("day", "region"), backend=backend).collect()
    from_entry = engine.serve(Domain.METRIC, "revenue", ("day", "region"), backend=backend).collect()
    canonical = engine.serve(Domain.METRIC, "revenue", ("region", "day"), backend=backend).collect()

    assert computed.columns == from_entry.columns == ["day", "region", "revenue"]
    assert canonical.columns == ["region", "day", "revenue"]
    assert_frame_equal(computed.sort(["day", "region"]), expected)
    assert_frame_equal(from_entry.sort(["day", "region"]), expected)
    assert len(backend.aggregates) == 1, "both orders share the canonical entry"
    (entry,) = entries_of(engine, Domain.METRIC)
    assert entry.key.anchor == ("region", "day")


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
    variant_engine = MetricEngine.open(variant, settings)
    try:
        with pytest.raises(UnknownNameError, match=r"'customer' cannot be reached from schema 'stores'"):
            variant_engine.serve(Domain.METRIC, "store_count", ("region", "customer"), backend=counting)
        assert counting.aggregates == []
        assert variant_engine.entries() == []
    finally:
        variant_engine.close()
        counting.close()


def test_a_result_over_the_byte_cap_is_served_but_not_memoized(
    ac: AnalyticalContext, settings: Settings, backend: CountingBackend
) -> None:
    capped = MetricEngine(ac, EntryStore.from_settings(settings), entry_byte_cap=10)
    try:
        grain = ac.family("revenue").base_grain
        for call in (1, 2):
            served = capped.serve(Domain.METRIC, "revenue", grain, backend=backend).collect()
            assert served.height > 1 and served.estimated_size() > 10
            assert_frame_equal(served.sort(list(grain)), direct_metric(backend.inner, ac, "revenue", grain))
            assert len(backend.aggregates) == call
        assert capped.entries() == []
    finally:
        capped.close()
