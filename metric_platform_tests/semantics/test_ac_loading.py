"""Loading the sample AC (data/acs/retail.yaml) into frozen specs, and looking things up in it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import uuid
from pathlib import Path

import pytest

from metric_platform.errors import UnknownNameError
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.spec import (
    AnalyticalContext,
    FilterCondition,
    FilterOp,
    JoinSpec,
    SourceKind,
)
from metric_platform.semantics.types import MissingValueKind, TimeGrain, VerificationLevel

REPO = Path(__file__).resolve().parents[2]
RETAIL = REPO / "data" / "acs" / "retail.yaml"
VALID = Path(__file__).parent / "fixtures" / "valid_minimal.yaml"
TO_STORES = JoinSpec("transactions", "stores", "store")


@pytest.fixture(scope="module")
def retail() -> AnalyticalContext:
    return load_ac(RETAIL)


def test_the_sample_ac_loads_with_its_identity(retail: AnalyticalContext) -> None:
    assert retail.name == "retail"
    assert retail.tenant_id == "acme"
    assert retail.project_id == uuid.UUID("5f0c6a43-8f5e-4c1b-9a7e-2d4b1c9e7a10")
    assert retail.partitions.start_date == dt.date(2026, 1, 1)
    assert retail.file == RETAIL
    assert retail.day_dimension == "day"
    assert retail.schema("transactions").verification_level is VerificationLevel.AAA
    assert retail.filters_for("transactions") == (
        FilterCondition("transactions", "tenant_id", FilterOp.EQ, "acme"),
    )
    assert retail.filters_for("stores") == ()
    assert retail.stability is not None
    assert (retail.stability.hold_off_days, retail.stability.timestamp_column) == (3, "updated_at")


@pytest.mark.parametrize(
    ("family", "operator", "base_grain"),
    [
        ("revenue", Operator.SUM, ("region", "day")),  # derived from its hints
        ("spend", Operator.SUM, ("campaign", "day")),
        ("conversions", Operator.SUM, ("store", "day")),
        ("transaction_count", Operator.COUNT, ("region", "day")),  # derived: [region, quarter] via day
        ("largest_sale", Operator.MAX, ("store", "day")),
        ("any_returned", Operator.BOOL_OR, ("store", "day")),
        ("average_sale", Operator.AVG, ("store", "day")),
        ("unique_customers", Operator.COUNT_DISTINCT, ("day",)),
    ],
)
def test_families_have_their_operator_and_base_grain(
    retail: AnalyticalContext, family: str, operator: Operator, base_grain: tuple[str, ...]
) -> None:
    spec = retail.family(family)
    assert spec.operator is operator
    assert spec.base_grain == base_grain
    assert spec.root_schema == "transactions"
    assert len(spec.fingerprint) == 16


def test_the_family_set_is_exactly_the_declared_one(retail: AnalyticalContext) -> None:
    assert list(retail.families) == [
        "revenue",
        "spend",
        "conversions",
        "transaction_count",
        "largest_sale",
        "any_returned",
        "average_sale",
        "unique_customers",
    ]


def test_cache_grains_reducers_and_missing_values(retail: AnalyticalContext) -> None:
    revenue = retail.family("revenue")
    assert revenue.cache_grains == (("region", "day"), ("region", "month"), ("region",))
    assert revenue.mvt.kind is MissingValueKind.SKIP
    spend = retail.family("spend")
    assert spend.cache_grains == (("channel", "week"),)
    assert (spend.mvt.kind, spend.mvt.value) == (MissingValueKind.IMPUTE, 0.0)
    conversions = retail.family("conversions")
    assert conversions.mvt.kind is MissingValueKind.PROPAGATE
    assert conversions.reducer.a_block == ("time", "geography")
    # Every cache grain rolls up from the base grain along the FD-DAG.
    for family in retail.families.values():
        for grain in family.cache_grains:
            assert retail.fd_dag.rolls_up(family.base_grain, grain), (family.name, grain)


def test_bindings_follow_joins_and_truncate_time(retail: AnalyticalContext) -> None:
    region, month = retail.bindings("transactions", ("region", "month"))
    assert (region.schema, region.column, region.join_path, region.time_grain) == (
        "stores",
        "region",
        (TO_STORES,),
        None,
    )
    assert (month.schema, month.column, month.join_path, month.time_grain) == (
        "transactions",
        "event_date",
        (),
        TimeGrain.MONTH,
    )
    # A conformed dimension is read on the root itself rather than through the join.
    (store,) = retail.bindings("transactions", ("store",))
    assert (store.schema, store.join_path) == ("transactions", ())


def test_a_dimension_unreachable_from_the_root_is_an_unknown_name(retail: AnalyticalContext) -> None:
    assert retail.binding("stores", "campaign") is None  # joins are many-to-one: stores -/-> transactions
    with pytest.raises(UnknownNameError, match="'campaign' cannot be reached from schema 'stores'"):
        retail.bindings("stores", ("region", "campaign"))


def test_canonical_grain_ignores_order_and_repeats(retail: AnalyticalContext) -> None:
    dims = ["month", "store", "channel", "region"]
    expected = ("store", "region", "channel", "month")  # declaration order
    for perm in itertools.permutations(dims):
        assert retail.canonical_grain(list(perm)) == expected
    assert retail.canonical_grain(("day", "region", "day")) == ("region", "day")
    with pytest.raises(UnknownNameError, match="did you mean 'region'"):
        retail.canonical_grain(["regoin"])


def test_the_source_path_is_relative_to_the_ac_file_unless_overridden(tmp_path: Path) -> None:
    default = load_ac(RETAIL)
    assert default.source.kind is SourceKind.PARQUET
    assert default.source.path == REPO / "data" / "sample"
    moved = load_ac(str(RETAIL), source_root=tmp_path / "fresh" / "acs")
    assert moved.source.path == tmp_path / "fresh" / "sample"
    assert moved.families.keys() == default.families.keys()


def test_specs_are_frozen(retail: AnalyticalContext) -> None:
    family = retail.family("revenue")
    with pytest.raises(dataclasses.FrozenInstanceError):
        retail.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        family.base_grain = ("day",)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        retail.schema("stores").table = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        retail.dimension("month").time_grain = TimeGrain.DAY  # type: ignore[misc]


@pytest.mark.parametrize(
    ("lookup", "name", "suggestion"),
    [
        ("family", "revenu", "revenue"),
        ("schema", "transaction", "transactions"),
        ("dimension", "chanel", "channel"),
    ],
)
def test_unknown_names_suggest_the_closest(
    retail: AnalyticalContext, lookup: str, name: str, suggestion: str
) -> None:
    with pytest.raises(UnknownNameError, match=f"did you mean '{suggestion}'") as info:
        getattr(retail, lookup)(name)
    assert "in AC 'retail'" in str(info.value)


def test_an_unknown_name_without_a_close_match_lists_the_known_ones(retail: AnalyticalContext) -> None:
    with pytest.raises(UnknownNameError, match="known: any_returned, average_sale, conversions") as info:
        retail.family("zzz")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("column", "literal", "expected"),
    [
        ("amount", "3", 3.0),  # an integer literal on a float column is widened
        ("sale_date", "2026-02-01", dt.date(2026, 2, 1)),
        ("updated_at", "2026-02-01 10:30:00", dt.datetime(2026, 2, 1, 10, 30)),
    ],
)
def test_impute_values_take_the_column_type(
    tmp_path: Path, column: str, literal: str, expected: object
) -> None:
    text = VALID.read_text(encoding="utf-8").replace(
        "      refunded: boolean\n", "      refunded: boolean\n      updated_at: timestamp\n"
    )
    text += (
        f"  - name: filled\n    family_root: {{schema: sales, column: {column}}}\n"
        f"    ip_reducers: [{{operator: MAX}}]\n    missing_values: {{impute: {literal}}}\n"
    )
    file = tmp_path / "impute.yaml"
    file.write_text(text, encoding="utf-8")
    mvt = load_ac(file).family("filled").mvt
    assert mvt.kind is MissingValueKind.IMPUTE
    assert mvt.value == expected
    assert type(mvt.value) is type(expected)
