"""top_values determinism and histogram edges, counts and special cases."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metric_platform.engine.qm.distributions import HISTOGRAM_SCHEMA, TOP_VALUES_SCHEMA, histogram, top_values
from metric_platform.errors import InvalidRequestError, UnknownNameError


def rows(frame: pl.DataFrame, *names: str) -> list[tuple[object, ...]]:
    return frame.select(names).rows()


# --- top values ----------------------------------------------------------------------------------


def test_top_values_rank_by_count_then_value_and_skip_null() -> None:
    lf = pl.LazyFrame({"c": ["b", "a", None, None, None, "c", "c", "b", "a"]})
    out = top_values(lf, "s", "c")
    assert out.schema == TOP_VALUES_SCHEMA
    assert rows(out, "value", "count", "rank") == [("a", 2, 1), ("b", 2, 2), ("c", 2, 3)]
    assert set(out["schema"]) == {"s"} and set(out["column"]) == {"c"}


def test_top_values_ties_are_ordered_by_the_typed_value_not_its_text() -> None:
    out = top_values(pl.LazyFrame({"n": [10, 9, 100, 9, 10, 100, 7]}), "s", "n", limit=3)
    assert rows(out, "value", "count", "rank") == [("9", 2, 1), ("10", 2, 2), ("100", 2, 3)]


@given(st.lists(st.sampled_from(["x", "y", "z", "w"]), max_size=30), st.randoms(use_true_random=False))
def test_top_values_do_not_depend_on_row_order(values: list[str], rnd: object) -> None:
    shuffled = list(values)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    first = top_values(pl.LazyFrame({"c": values}, schema={"c": pl.String}), "s", "c", limit=3)
    second = top_values(pl.LazyFrame({"c": shuffled}, schema={"c": pl.String}), "s", "c", limit=3)
    assert first.equals(second)
    expected = sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert rows(first, "value", "count") == expected
    assert first["rank"].to_list() == list(range(1, len(expected) + 1))


def test_top_values_render_like_the_profile() -> None:
    lf = pl.LazyFrame(
        {
            "d": [dt.date(2024, 1, 2)] * 2 + [dt.date(2023, 1, 1)],
            "b": [True, False, False],
            "e": pl.Series(["z", "a", "z"], dtype=pl.Enum(["z", "a"])),
        }
    )
    assert rows(top_values(lf, "s", "d"), "value", "count") == [("2024-01-02", 2), ("2023-01-01", 1)]
    assert rows(top_values(lf, "s", "b"), "value", "count") == [("false", 2), ("true", 1)]
    assert rows(top_values(lf, "s", "e"), "value", "count") == [("z", 2), ("a", 1)]


def test_top_values_of_empty_and_all_null_columns_are_empty() -> None:
    for series in (
        pl.Series("c", [], dtype=pl.Int64),
        pl.Series("c", [None, None]),
        pl.Series("c", [None], dtype=pl.String),
    ):
        out = top_values(pl.DataFrame([series]).lazy(), "s", "c")
        assert out.is_empty() and out.schema == TOP_VALUES_SCHEMA


def test_top_values_reject_bad_requests() -> None:
    with pytest.raises(InvalidRequestError, match="limit >= 1"):
        top_values(pl.LazyFrame({"c": [1]}), "s", "c", limit=0)
    with pytest.raises(InvalidRequestError, match="scalar values"):
        top_values(pl.LazyFrame({"c": [[1]]}), "s", "c")
    with pytest.raises(UnknownNameError, match="'c'"):
        top_values(pl.LazyFrame({"c": [1]}), "s", "nope")


# --- histograms ----------------------------------------------------------------------------------


def test_histogram_bins_span_min_to_max_with_the_max_in_the_last_bin() -> None:
    out = histogram(pl.LazyFrame({"x": [0, 1, 2, 3, 4, None, 10]}), "s", "x", bins=5)
    assert out.schema == HISTOGRAM_SCHEMA
    assert rows(out, "bin_index", "lower", "upper", "count") == [
        (0, 0.0, 2.0, 2),
        (1, 2.0, 4.0, 2),
        (2, 4.0, 6.0, 1),
        (3, 6.0, 8.0, 0),
        (4, 8.0, 10.0, 1),
    ]


def test_a_value_on_an_edge_goes_to_the_bin_that_edge_opens_despite_rounding() -> None:
    # floor((x - min) / width) puts 10.376 in bin 0 in Polars, yet it is the lower edge of bin 1.
    low, high = 7.2, 13.552
    on_edge = low + (high - low) / 2.0
    out = histogram(pl.LazyFrame({"x": [low, on_edge, high]}), "s", "x", bins=2)
    assert rows(out, "lower", "upper", "count") == [(low, on_edge, 1), (on_edge, high, 2)]


def test_constant_column_gives_one_bin() -> None:
    out = histogram(pl.LazyFrame({"x": [2.5, 2.5, None]}), "s", "x", bins=4)
    assert rows(out, "bin_index", "lower", "upper", "count") == [(0, 2.5, 2.5, 2)]


def test_no_finite_values_gives_no_bins() -> None:
    for values in ([], [None, None], [float("nan"), float("inf")]):
        out = histogram(pl.LazyFrame({"x": values}, schema={"x": pl.Float64}), "s", "x")
        assert out.is_empty() and out.schema == HISTOGRAM_SCHEMA


def test_nan_and_infinities_are_excluded_from_bins() -> None:
    out = histogram(pl.LazyFrame({"x": [1.0, float("nan"), float("-inf"), 3.0]}), "s", "x", bins=2)
    assert rows(out, "lower", "upper", "count") == [(1.0, 2.0, 1), (2.0, 3.0, 1)]


def test_histogram_rejects_non_numeric_columns_and_bad_bins() -> None:
    lf = pl.LazyFrame({"s": ["a"], "b": [True], "x": [1]})
    for column in ("s", "b"):
        with pytest.raises(InvalidRequestError, match="histograms need a numeric column"):
            histogram(lf, "s", column)
    with pytest.raises(InvalidRequestError, match="bins >= 1"):
        histogram(lf, "s", "x", bins=0)


@given(
    st.lists(
        st.one_of(st.none(), st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)),
        min_size=1,
        max_size=60,
    ),
    st.integers(min_value=1, max_value=12),
)
def test_histogram_counts_agree_with_the_reported_edges(values: list[float | None], bins: int) -> None:
    out = histogram(pl.LazyFrame({"x": values}, schema={"x": pl.Float64}), "s", "x", bins=bins)
    present = [v for v in values if v is not None]
    if not present:
        assert out.is_empty()
        return
    assert out["count"].sum() == len(present)
    if min(present) == max(present):
        assert out.height == 1
        return
    assert out["bin_index"].to_list() == list(range(bins))
    edges = list(zip(out["lower"], out["upper"], strict=True))
    assert edges[0][0] == min(present) and edges[-1][1] == max(present)
    assert all(edges[i][1] == edges[i + 1][0] for i in range(bins - 1))
    expected = [
        sum(1 for v in present if lower <= v and (v < upper or (i == bins - 1 and v <= upper)))
        for i, (lower, upper) in enumerate(edges)
    ]
    assert out["count"].to_list() == expected
