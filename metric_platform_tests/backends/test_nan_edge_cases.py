"""NaN in a float column: every backend answers as DuckDB does over the same rows.

SQL orders NaN above every number: MAX is NaN as soon as one value is, MIN skips NaN unless every
non-null value is NaN, SUM/AVG/MEDIAN propagate it, COUNT counts it. SQLite has no NaN and stores a
NaN as NULL, so the SQLite backend is held to DuckDB over the rows with NaN replaced by NULL.

Revenue by region in ``nan_edge`` (``datasets.NAN_REVENUE``): north 10, NaN, 30, 5, NULL; south
NaN, NULL, 40; the NULL region NaN, NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from metric_platform.backends.protocol import AggregateRequest
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.spec import MetricFamily
from metric_platform.semantics.types import MissingValueKind, MissingValueTreatment
from metric_platform_tests.backends.conftest import OpenBackend
from metric_platform_tests.backends.datasets import Dataset, without_nan
from metric_platform_tests.backends.oracle import Oracle, assert_same_result

OPERATORS = [
    Operator.SUM,
    Operator.COUNT,
    Operator.MIN,
    Operator.MAX,
    Operator.AVG,
    Operator.MEDIAN,
    Operator.COUNT_DISTINCT,
]
TREATMENTS = [
    MissingValueTreatment(),
    MissingValueTreatment(MissingValueKind.PROPAGATE),
    MissingValueTreatment(MissingValueKind.IMPUTE, 0.0),
]
ANCHORS = [(), ("region",), ("store", "day"), ("region", "month")]


@pytest.fixture(scope="module")
def oracles(nan_edge: Dataset) -> Iterator[dict[bool, Oracle]]:
    """DuckDB over the rows as stored: with NaN (Parquet, PostgreSQL) and with NULL (SQLite)."""
    made = {
        False: Oracle(nan_edge.ac, nan_edge.frames),
        True: Oracle(nan_edge.ac, without_nan(nan_edge.frames)),
    }
    yield made
    for oracle in made.values():
        oracle.close()


@pytest.fixture
def oracle(backend_kind: str, oracles: dict[bool, Oracle]) -> Oracle:
    return oracles[backend_kind == "sqlite"]


def revenue_family(dataset: Dataset, operator: Operator) -> MetricFamily:
    base = dataset.ac.family("revenue")
    return replace(base, name="v", reducer=replace(base.reducer, operator=operator))


@pytest.mark.parametrize("treatment", TREATMENTS, ids=lambda t: t.kind.value)
@pytest.mark.parametrize("operator", OPERATORS, ids=str)
def test_nan_matches_duckdb(
    open_backend: OpenBackend,
    nan_edge: Dataset,
    oracle: Oracle,
    operator: Operator,
    treatment: MissingValueTreatment,
) -> None:
    family = revenue_family(nan_edge, operator)
    for anchor in ANCHORS:
        for with_counts in (False, True):
            request = AggregateRequest(family, anchor, mvt=treatment, with_counts=with_counts)
            actual = open_backend(nan_edge).aggregate(request).collect()
            context = f"{operator} {treatment.kind} at {anchor} counts={with_counts}"
            assert_same_result(actual, oracle.aggregate(request), context=context)


def by_region(open_backend: OpenBackend, dataset: Dataset, operator: Operator) -> dict[Any, Any]:
    request = AggregateRequest(revenue_family(dataset, operator), ("region",))
    return dict(open_backend(dataset).aggregate(request).collect().iter_rows())


def test_max_is_nan_when_any_value_is(
    open_backend: OpenBackend, backend_kind: str, nan_edge: Dataset
) -> None:
    got = by_region(open_backend, nan_edge, Operator.MAX)
    if backend_kind == "sqlite":  # NaN was stored as NULL: skipped like any missing value
        assert got == {"north": 30.0, "south": 40.0, None: None}
    else:
        assert set(got) == {"north", "south", None}
        assert all(math.isnan(v) for v in got.values()), got


def test_min_is_nan_only_when_every_value_is(
    open_backend: OpenBackend, backend_kind: str, nan_edge: Dataset
) -> None:
    got = by_region(open_backend, nan_edge, Operator.MIN)
    assert got["north"] == 5.0
    assert got["south"] == 40.0
    if backend_kind == "sqlite":
        assert got[None] is None
    else:
        assert math.isnan(got[None])
