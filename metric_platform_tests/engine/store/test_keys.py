"""Entry keys and metadata: validation, signatures, and the on-disk layout derived from them."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metric_platform.engine.store import Domain, EntryKey
from metric_platform.engine.store.layout import entry_dir
from metric_platform.errors import InvalidRequestError
from metric_platform_tests.engine.store._support import meta

identifiers = st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True)


@given(
    ac=identifiers,
    domain=st.sampled_from(Domain),
    dataset=identifiers,
    anchor=st.lists(identifiers, max_size=4).map(tuple),
    day=st.one_of(st.just(""), st.dates(date(2000, 1, 1), date(2100, 1, 1)).map(date.isoformat)),
)
def test_key_round_trips_through_its_manifest_columns(
    ac: str, domain: Domain, dataset: str, anchor: tuple[str, ...], day: str
) -> None:
    k = EntryKey(ac, domain, dataset, anchor, day)
    assert EntryKey.from_signature(ac, domain, dataset, k.anchor_signature, day) == k
    assert k.anchor_signature.split(",") == list(anchor) or anchor == ()
    parts = entry_dir(k).parts
    assert parts[:3] == (ac, domain.value, dataset) and ".." not in parts and len(parts) == 5


def test_signature_slice_day_and_description() -> None:
    k = EntryKey("shop", Domain.QM, "column_profile", ("orders", "amount"), "2026-01-31")
    assert k.anchor_signature == "orders,amount"
    assert k.slice_day == date(2026, 1, 31)
    assert k.describe() == "shop/QM/column_profile[orders,amount]@2026-01-31"
    assert EntryKey("shop", Domain.METRIC, "revenue", ()).slice_day is None
    assert str(entry_dir(k)) == "shop/QM/column_profile/anchor=orders,amount/2026-01-31"


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("ac_name", "../etc", "ac_name"),
        ("ac_name", "-x", "ac_name"),
        ("ac_name", "", "ac_name"),
        ("dataset_id", "rev enue", "dataset_id"),
        ("dataset_id", "a/b", "dataset_id"),
        ("anchor", ("region", "da,y"), "anchor element"),
        ("anchor", ("",), "anchor element"),
        ("anchor", ["region"], "tuple"),
        ("slice_key", "2026-02-30", "slice_key"),
        ("slice_key", "2026-W05-6", "slice_key"),
        ("slice_key", "20260131", "slice_key"),
        ("domain", "METRIC", "Domain"),
    ],
)
def test_invalid_key_parts_are_refused_with_the_part_named(field: str, value: object, match: str) -> None:
    parts: dict[str, object] = {
        "ac_name": "shop",
        "domain": Domain.METRIC,
        "dataset_id": "revenue",
        "anchor": ("region",),
        "slice_key": "",
    }
    parts[field] = value
    with pytest.raises(InvalidRequestError, match=match):
        EntryKey(**parts)  # type: ignore[arg-type]


def test_very_wide_anchor_gets_a_bounded_stable_directory_name() -> None:
    anchor = tuple(f"dimension_number_{i}" for i in range(20))
    k = EntryKey("shop", Domain.METRIC, "revenue", anchor)
    name = entry_dir(k).parts[3]
    assert len(name) < 100 and name == entry_dir(EntryKey("shop", Domain.METRIC, "revenue", anchor)).parts[3]
    assert name != entry_dir(EntryKey("shop", Domain.METRIC, "revenue", anchor[:-1])).parts[3]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"imputation_value": "not json"}, "imputation_value must be JSON"),
        ({"source_filter": "{bad"}, "source_filter must be JSON"),
        ({"source_schemas": ["orders"]}, "tuple of schema names"),
        ({"stability_cutoff": datetime(2026, 1, 1)}, "datetime.date"),
    ],
)
def test_invalid_entry_meta_is_refused(changes: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        meta(**changes)
