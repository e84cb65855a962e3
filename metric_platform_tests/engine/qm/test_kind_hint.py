"""Each branch of the kind-hint heuristic, on real frames and on hand-built facts at the thresholds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from metric_platform.engine.qm.kind_hint import (
    DtypeClass,
    KindHint,
    dtype_class,
    dtype_class_of_name,
    kind_hint_expr,
)
from metric_platform.engine.qm.profiling import profile_columns


def hint_of(values: pl.Series) -> KindHint:
    frame = pl.DataFrame([values])
    return KindHint(profile_columns(frame.lazy(), "s")["kind_hint"][0])


def facts_hint(
    *,
    cls: DtypeClass,
    non_null: int,
    distinct: int,
    name: str = "value",
    mean_length: float | None = None,
    whitespace: int | None = None,
) -> KindHint:
    facts = pl.DataFrame(
        {
            "column": [name],
            "dtype_class": [cls.value],
            "row_count": [non_null + 3],
            "null_count": [3],
            "distinct_count": [distinct],
            "mean_length": [mean_length],
            "whitespace_count": [whitespace],
        },
        schema_overrides={"mean_length": pl.Float64, "whitespace_count": pl.Int64},
    )
    return KindHint(facts.select(kind_hint_expr()).item())


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (pl.Int8(), DtypeClass.INTEGER),
        (pl.UInt64(), DtypeClass.INTEGER),
        (pl.Float32(), DtypeClass.FLOAT),
        (pl.Decimal(10, 2), DtypeClass.FLOAT),
        (pl.Boolean(), DtypeClass.BOOLEAN),
        (pl.Date(), DtypeClass.TEMPORAL),
        (pl.Datetime("ns", "Europe/Paris"), DtypeClass.TEMPORAL),
        (pl.Time(), DtypeClass.TEMPORAL),
        (pl.String(), DtypeClass.TEXT),
        (pl.Categorical(), DtypeClass.TEXT),
        (pl.Enum(["a", "b"]), DtypeClass.TEXT),
        (pl.Duration("ms"), DtypeClass.OTHER),
        (pl.List(pl.Int64), DtypeClass.OTHER),
        (pl.Null(), DtypeClass.OTHER),
    ],
)
def test_dtype_class_is_the_same_from_the_dtype_and_from_its_stored_name(
    dtype: pl.DataType, expected: DtypeClass
) -> None:
    assert dtype_class(dtype) is expected
    assert dtype_class_of_name(str(dtype)) is expected


def test_boolean_dtype_is_boolean_even_with_an_id_name() -> None:
    assert hint_of(pl.Series("flag_id", [True, False, None])) is KindHint.BOOLEAN


@pytest.mark.parametrize(
    "series",
    [
        pl.Series("day", [dt.date(2024, 1, 1), dt.date(2024, 1, 1), None]),
        pl.Series("at", [dt.datetime(2024, 1, 1, 5), dt.datetime(2024, 1, 2)]),
        pl.Series("at_id", [dt.time(1, 2), dt.time(3, 4)]),
    ],
)
def test_temporal_dtypes_are_temporal(series: pl.Series) -> None:
    assert hint_of(series) is KindHint.TEMPORAL


@pytest.mark.parametrize(
    "name", ["id", "ID", "customer_id", "CUSTOMER_ID", "customer-id", "customerId", "customerID"]
)
def test_id_like_names_make_integers_and_strings_identifiers_despite_repeats(name: str) -> None:
    assert hint_of(pl.Series(name, [7, 7, 7, 8])) is KindHint.IDENTIFIER
    assert hint_of(pl.Series(name, ["a", "a", "b", None])) is KindHint.IDENTIFIER


@pytest.mark.parametrize("name", ["paid", "valid", "VALID", "idle"])
def test_names_merely_ending_in_id_letters_are_not_identifiers(name: str) -> None:
    assert hint_of(pl.Series(name, [1, 1, 2, 2])) is KindHint.CATEGORICAL


def test_float_with_id_name_is_numeric_not_identifier() -> None:
    assert hint_of(pl.Series("score_id", [0.5 * i for i in range(100)] * 2)) is KindHint.NUMERIC


def test_all_distinct_integers_and_codes_are_identifiers() -> None:
    assert hint_of(pl.Series("n", [5, 3, 9, None])) is KindHint.IDENTIFIER
    assert hint_of(pl.Series("code", [f"SKU-{i:05d}" for i in range(500)])) is KindHint.IDENTIFIER


def test_a_single_non_null_value_is_not_an_identifier() -> None:
    assert hint_of(pl.Series("n", [5, None, None])) is KindHint.CATEGORICAL


def test_unique_prose_is_free_text_not_identifier() -> None:
    sentences = [f"customer number {i} asked about the delivery date" for i in range(200)]
    assert hint_of(pl.Series("note", sentences)) is KindHint.FREE_TEXT


def test_low_cardinality_integers_and_strings_are_categorical() -> None:
    assert hint_of(pl.Series("year", [2020, 2021, 2022] * 50)) is KindHint.CATEGORICAL
    assert hint_of(
        pl.Series("status", ["the order was shipped today", "cancelled by the customer"] * 30)
    ) is (KindHint.CATEGORICAL)


def test_high_cardinality_numbers_are_numeric() -> None:
    assert hint_of(pl.Series("qty", list(range(300)) * 2)) is KindHint.NUMERIC
    assert hint_of(pl.Series("price", [1.5, 2.5])) is KindHint.NUMERIC  # floats are never identifiers
    assert hint_of(pl.Series("amount", [Decimal("1.10"), Decimal("2.20")])) is KindHint.NUMERIC


def test_long_or_spaced_high_cardinality_text_is_free_text() -> None:
    long_words = ["x" * 40 + str(i % 200) for i in range(400)]
    spaced = [f"a {i % 200}" for i in range(400)]
    assert hint_of(pl.Series("blob", long_words)) is KindHint.FREE_TEXT
    assert hint_of(pl.Series("pair", spaced)) is KindHint.FREE_TEXT


def test_short_unspaced_high_cardinality_text_and_other_dtypes_are_categorical() -> None:
    assert hint_of(pl.Series("city", [f"city{i % 300}" for i in range(600)])) is KindHint.CATEGORICAL
    assert hint_of(pl.Series("tags", [[1], [2], [1]])) is KindHint.CATEGORICAL
    assert hint_of(pl.Series("empty", [None, None], dtype=pl.Null)) is KindHint.CATEGORICAL


def test_low_cardinality_threshold_is_max_of_20_and_5_percent() -> None:
    assert facts_hint(cls=DtypeClass.INTEGER, non_null=100, distinct=20) is KindHint.CATEGORICAL
    assert facts_hint(cls=DtypeClass.INTEGER, non_null=100, distinct=21) is KindHint.NUMERIC
    assert facts_hint(cls=DtypeClass.INTEGER, non_null=1000, distinct=50) is KindHint.CATEGORICAL
    assert facts_hint(cls=DtypeClass.INTEGER, non_null=1000, distinct=51) is KindHint.NUMERIC


def test_prose_thresholds_are_mean_length_30_and_whitespace_in_more_than_half() -> None:
    def text_hint(mean_length: float, whitespace: int) -> KindHint:
        return facts_hint(
            cls=DtypeClass.TEXT, non_null=1000, distinct=900, mean_length=mean_length, whitespace=whitespace
        )

    assert text_hint(30.0, 0) is KindHint.CATEGORICAL
    assert text_hint(30.5, 0) is KindHint.FREE_TEXT
    assert text_hint(5.0, 500) is KindHint.CATEGORICAL
    assert text_hint(5.0, 501) is KindHint.FREE_TEXT


def test_empty_and_all_null_columns_get_a_hint_without_error() -> None:
    assert hint_of(pl.Series("n", [], dtype=pl.Int64)) is KindHint.CATEGORICAL
    assert hint_of(pl.Series("s", [None, None], dtype=pl.String)) is KindHint.CATEGORICAL
    assert hint_of(pl.Series("f", [None, None], dtype=pl.Float64)) is KindHint.NUMERIC
