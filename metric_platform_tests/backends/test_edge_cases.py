"""Exact expected values on the hand-made edge cases (``datasets.edge_frames``), per backend.

Rows by region (S3's store row is filtered out and S4 has none, so both land in the NULL region):
north = S1: revenue 10, 20, 30, 5, NULL; conversions 1, 3, NULL, 2, 4; customers a, B, a, c, c
south = S2: revenue NULL, NULL, 40; conversions NULL, NULL, 6; customers a, NULL, B
NULL  = S4, S3: revenue 7, 3; conversions 0, 1; customers d, a
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import polars as pl
import pytest

from metric_platform.backends.normalize import result_schema
from metric_platform.backends.protocol import AggregateRequest, DateWindow
from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.types import MissingValueKind, MissingValueTreatment
from metric_platform_tests.backends.conftest import OpenBackend
from metric_platform_tests.backends.datasets import Dataset

D = dt.date
SKIP = MissingValueTreatment()
PROPAGATE = MissingValueTreatment(MissingValueKind.PROPAGATE)
EMPTY_WINDOW = DateWindow(D(2026, 5, 1), D(2026, 5, 31))


def run(
    open_backend: OpenBackend,
    edge: Dataset,
    operator: Operator,
    column: str,
    anchor: tuple[str, ...],
    *,
    mvt: MissingValueTreatment = SKIP,
    window: DateWindow | None = None,
) -> dict[Any, Any]:
    """The result as {anchor value (a tuple for several dims): value}, after checking its schema."""
    base = edge.ac.family("revenue")
    family = replace(base, name="v", root_column=column, reducer=replace(base.reducer, operator=operator))
    frame = open_backend(edge).aggregate(AggregateRequest(family, anchor, window, mvt)).collect()
    assert frame.schema == result_schema(edge.ac, family, anchor)
    if not anchor:
        assert frame.height == 1
        return {(): frame.item()}
    if len(anchor) == 1:
        return dict(frame.iter_rows())
    return {row[:-1]: row[-1] for row in frame.iter_rows()}


@pytest.mark.parametrize(
    ("mvt", "want"),
    [
        (SKIP, {"north": 65.0, "south": 40.0, None: 10.0}),
        (PROPAGATE, {"north": None, "south": None, None: 10.0}),
        (MissingValueTreatment(MissingValueKind.IMPUTE, 2.5), {"north": 67.5, "south": 45.0, None: 10.0}),
    ],
    ids=["skip", "propagate", "impute"],
)
def test_sum_by_region(
    open_backend: OpenBackend, edge: Dataset, mvt: MissingValueTreatment, want: dict[Any, Any]
) -> None:
    # the other tenant's 1000.0 is filtered out; the dormant east store has no row at all
    assert run(open_backend, edge, Operator.SUM, "revenue", ("region",), mvt=mvt) == want


def test_all_null_group_is_null_not_zero(open_backend: OpenBackend, edge: Dataset) -> None:
    key = ("S2", D(2026, 3, 3))  # both rows NULL in every value column
    assert run(open_backend, edge, Operator.SUM, "revenue", ("store", "day"))[key] is None
    assert run(open_backend, edge, Operator.SUM, "conversions", ("store", "day"))[key] is None
    assert run(open_backend, edge, Operator.BOOL_AND, "is_returned", ("store", "day"))[key] is None
    assert run(open_backend, edge, Operator.BOOL_OR, "is_returned", ("store", "day"))[key] is None
    assert run(open_backend, edge, Operator.AVG, "revenue", ("store", "day"))[key] is None
    assert run(open_backend, edge, Operator.MEDIAN, "revenue", ("store", "day"))[key] is None
    assert run(open_backend, edge, Operator.COUNT, "revenue", ("store", "day"))[key] == 0
    assert run(open_backend, edge, Operator.COUNT_DISTINCT, "revenue", ("store", "day"))[key] == 0


def test_group_with_one_null(open_backend: OpenBackend, edge: Dataset) -> None:
    key = ("S1", D(2026, 3, 8))  # revenue 5.0 and NULL; returned True and False
    assert run(open_backend, edge, Operator.SUM, "revenue", ("store", "day"))[key] == 5.0
    assert run(open_backend, edge, Operator.SUM, "revenue", ("store", "day"), mvt=PROPAGATE)[key] is None
    assert run(open_backend, edge, Operator.COUNT, "revenue", ("store", "day"), mvt=PROPAGATE)[key] is None
    assert run(open_backend, edge, Operator.COUNT, "revenue", ("store", "day"))[key] == 1
    assert run(open_backend, edge, Operator.BOOL_AND, "is_returned", ("store", "day"))[key] is False
    assert run(open_backend, edge, Operator.BOOL_OR, "is_returned", ("store", "day"))[key] is True


def test_counts_ignore_null(open_backend: OpenBackend, edge: Dataset) -> None:
    assert run(open_backend, edge, Operator.COUNT, "customer_id", ("region",)) == {
        "north": 5,
        "south": 2,
        None: 2,
    }
    distinct = run(open_backend, edge, Operator.COUNT_DISTINCT, "customer_id", ("region",))
    assert distinct == {"north": 3, "south": 2, None: 2}  # south's NULL customer is not a value
    impute = MissingValueTreatment(MissingValueKind.IMPUTE, "zz")
    imputed = run(open_backend, edge, Operator.COUNT_DISTINCT, "customer_id", ("region",), mvt=impute)
    assert imputed == {"north": 3, "south": 3, None: 2}


def test_median_and_average(open_backend: OpenBackend, edge: Dataset) -> None:
    # north has an even number of non-null values: the mean of the middle two
    assert run(open_backend, edge, Operator.MEDIAN, "revenue", ("region",)) == {
        "north": 15.0,
        "south": 40.0,
        None: 5.0,
    }
    assert run(open_backend, edge, Operator.MEDIAN, "conversions", ("region",)) == {
        "north": 2.5,
        "south": 6.0,
        None: 0.5,
    }
    assert run(open_backend, edge, Operator.AVG, "conversions", ("region",)) == {
        "north": 2.5,
        "south": 6.0,
        None: 0.5,
    }


def test_string_min_max_compare_bytes(open_backend: OpenBackend, edge: Dataset) -> None:
    # "B" < "a" bytewise; a locale collation (PostgreSQL's default) would say "a"
    assert run(open_backend, edge, Operator.MIN, "customer_id", ()) == {(): "B"}
    assert run(open_backend, edge, Operator.MAX, "customer_id", ()) == {(): "d"}


def test_calendar_buckets_and_null_channel(open_backend: OpenBackend, edge: Dataset) -> None:
    weeks = run(open_backend, edge, Operator.COUNT, "txn_id", ("week",))
    assert weeks == {D(2026, 3, 2): 7, D(2026, 3, 9): 2, D(2026, 3, 30): 1}
    assert run(open_backend, edge, Operator.COUNT, "txn_id", ("quarter",)) == {
        D(2026, 1, 1): 9,
        D(2026, 4, 1): 1,
    }
    channels = run(open_backend, edge, Operator.COUNT, "txn_id", ("channel",))
    assert channels == {"search": 6, "social": 3, None: 1}  # txn 5 has no campaign


def test_window_is_inclusive(open_backend: OpenBackend, edge: Dataset) -> None:
    window = DateWindow(D(2026, 3, 3), D(2026, 3, 8))  # a Tuesday to the Sunday of the same week
    assert run(open_backend, edge, Operator.SUM, "revenue", ("week",), window=window) == {D(2026, 3, 2): 5.0}
    one_day = DateWindow.day(D(2026, 3, 9))
    assert run(open_backend, edge, Operator.SUM, "revenue", ("region",), window=one_day) == {None: 10.0}


@pytest.mark.parametrize(
    ("operator", "column", "want"),
    [
        (Operator.SUM, "revenue", None),
        (Operator.COUNT, "revenue", 0),
        (Operator.COUNT_DISTINCT, "customer_id", 0),
        (Operator.MIN, "event_date", None),
        (Operator.BOOL_AND, "is_returned", None),
        (Operator.BOOL_OR, "is_returned", None),
        (Operator.AVG, "conversions", None),
        (Operator.MEDIAN, "conversions", None),
    ],
    ids=str,
)
def test_empty_window(
    open_backend: OpenBackend, edge: Dataset, operator: Operator, column: str, want: object
) -> None:
    """No anchor gives one row even over zero rows (SQL without GROUP BY); an anchor gives none."""
    assert run(open_backend, edge, operator, column, (), window=EMPTY_WINDOW) == {(): want}
    assert run(open_backend, edge, operator, column, ("region", "month"), window=EMPTY_WINDOW) == {}
    assert run(open_backend, edge, operator, column, (), window=EMPTY_WINDOW, mvt=PROPAGATE) == {(): want}


def test_empty_window_frame_is_typed(open_backend: OpenBackend, edge: Dataset) -> None:
    family = edge.ac.family("transaction_count")
    frame = open_backend(edge).aggregate(AggregateRequest(family, ("store", "day"), EMPTY_WINDOW)).collect()
    assert frame.schema == pl.Schema({"store": pl.String, "day": pl.Date, family.name: pl.Int64})
    assert frame.height == 0


def test_impute_value_takes_the_column_type(open_backend: OpenBackend, edge: Dataset) -> None:
    whole = MissingValueTreatment(MissingValueKind.IMPUTE, 1.0)  # a float for an integer column
    sums = run(open_backend, edge, Operator.SUM, "conversions", ("region",), mvt=whole)
    assert sums == {"north": 11, "south": 8, None: 1}
    for value in (2.5, "x"):
        bad = MissingValueTreatment(MissingValueKind.IMPUTE, value)
        with pytest.raises(
            InvalidRequestError, match=r"impute value of 'v': .* is not a valid integer value"
        ):
            run(open_backend, edge, Operator.SUM, "conversions", ("region",), mvt=bad)
