"""The cross-backend compliance suite: every backend against the DuckDB oracle.

Each test runs once per backend (``open_backend``). Every backend must equal the same independent
oracle (values, NULLs, dtypes; floats to 1e-9 relative) for every operator x missing-value treatment
x anchor x window, and with the ``__rows``/``__nonnull`` counts for one operator of each shape, on
the generated sample, the hand-made edge cases and those same cases stored under physical column
names (``name_map``), so all backends are identical to each other too.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import replace

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.normalize import NONNULL_COLUMN, ROWS_COLUMN
from metric_platform.backends.protocol import AggregateRequest, DateWindow
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.spec import AnalyticalContext, MetricFamily
from metric_platform.semantics.types import (
    ColumnType,
    MissingValueKind,
    MissingValueTreatment,
    TimeGrain,
)
from metric_platform_tests.backends.conftest import OpenBackend
from metric_platform_tests.backends.datasets import CALENDAR_END, CALENDAR_START, Dataset
from metric_platform_tests.backends.oracle import Oracle, assert_same_result

CASES = [
    (Operator.SUM, "revenue"),
    (Operator.SUM, "conversions"),
    (Operator.COUNT, "campaign_id"),
    (Operator.MIN, "revenue"),
    (Operator.MAX, "conversions"),
    (Operator.MIN, "customer_id"),
    (Operator.MAX, "event_date"),
    (Operator.MIN, "updated_at"),
    (Operator.BOOL_AND, "is_returned"),
    (Operator.BOOL_OR, "is_returned"),
    (Operator.AVG, "revenue"),
    (Operator.AVG, "conversions"),
    (Operator.MEDIAN, "revenue"),
    (Operator.MEDIAN, "conversions"),
    (Operator.COUNT_DISTINCT, "customer_id"),
    (Operator.COUNT_DISTINCT, "campaign_id"),
]
# The counts do not depend on the operator, but the Polars plan computes them with the value, in
# one group_by whose shape depends on the operator: one case per shape (the value reads the non-null
# count; it reads that and the row count; it reads neither; no aggregate of its own), on columns
# with NULLs.
COUNTED_CASES = [
    (Operator.SUM, "revenue"),
    (Operator.COUNT_DISTINCT, "customer_id"),
    (Operator.MAX, "conversions"),
    (Operator.COUNT, "campaign_id"),
]
IMPUTE_VALUES: dict[ColumnType, int | float | str | bool | dt.date | dt.datetime] = {
    ColumnType.INTEGER: 7,
    ColumnType.FLOAT: 2.5,
    ColumnType.STRING: "zz-imputed",
    ColumnType.BOOLEAN: True,
    ColumnType.DATE: dt.date(2026, 1, 1),
    ColumnType.TIMESTAMP: dt.datetime(2026, 1, 1, 12, 30, 0, 123456),
}
ANCHORS = [
    (),
    ("day",),
    ("store", "day"),
    ("region",),
    ("region", "month"),
    ("channel", "week"),
    ("region", "quarter"),
    ("year",),
]
WINDOWS = {
    # mid-week to mid-week, across a month boundary
    "sample": [None, DateWindow(dt.date(2026, 10, 28), dt.date(2026, 11, 12))],
    "edge": [None, DateWindow(dt.date(2026, 3, 3), dt.date(2026, 3, 9))],
}
WINDOWS["renamed"] = WINDOWS["edge"]
# the renamed set only needs the anchors that read renamed columns (store, and region via store)
ANCHORS_OF = {"sample": ANCHORS, "edge": ANCHORS, "renamed": [(), ("store", "day"), ("region",)]}
_ORACLES: dict[str, Oracle] = {}
_EXPECTED: dict[tuple[str, AggregateRequest], pl.DataFrame] = {}  # keyed with_counts=True


def family_for(
    ac: AnalyticalContext, operator: Operator, column: str, kind: MissingValueKind
) -> MetricFamily:
    base = ac.family("revenue")
    impute = IMPUTE_VALUES[ac.schema(base.root_schema).column_type(column)]
    mvt = MissingValueTreatment(kind, impute if kind is MissingValueKind.IMPUTE else None)
    return replace(
        base,
        name=f"{operator.value.lower()}_{column}",
        root_column=column,
        reducer=replace(base.reducer, operator=operator),
        mvt=mvt,
    )


def expected(dataset: Dataset, request: AggregateRequest) -> pl.DataFrame:
    counted = replace(request, with_counts=True)
    key = (dataset.name, counted)
    if key not in _EXPECTED:  # computed once, with the counts, for every backend and both forms
        if dataset.name not in _ORACLES:
            _ORACLES[dataset.name] = Oracle(dataset.ac, dataset.frames)
        _EXPECTED[key] = _ORACLES[dataset.name].aggregate(counted)
    frame = _EXPECTED[key]
    return frame if request.with_counts else frame.drop(ROWS_COLUMN, NONNULL_COLUMN)


@pytest.fixture
def datasets(sample: Dataset, edge: Dataset, renamed: Dataset) -> tuple[Dataset, ...]:
    return (sample, edge, renamed)


@pytest.fixture
def counted_datasets(sample: Dataset, edge: Dataset) -> tuple[Dataset, ...]:
    """name_map is orthogonal to the counts: the renamed set is left out of their matrix."""
    return (sample, edge)


def check_matrix(
    open_backend: OpenBackend,
    datasets: tuple[Dataset, ...],
    family_of: tuple[Operator, str, MissingValueKind],
    *,
    with_counts: bool,
) -> None:
    """Every anchor x window of every dataset equals the oracle."""
    for dataset in datasets:
        backend = open_backend(dataset)
        family = family_for(dataset.ac, *family_of)
        for anchor in ANCHORS_OF[dataset.name]:
            for window in WINDOWS[dataset.name]:
                request = AggregateRequest(family, anchor, window, with_counts=with_counts)
                lazy = backend.aggregate(request)
                assert isinstance(lazy, pl.LazyFrame)
                context = f"{backend.name} {dataset.name} {family.name} {family.mvt} {anchor} {window}"
                assert_same_result(lazy.collect(), expected(dataset, request), context=context)


@pytest.mark.parametrize("kind", list(MissingValueKind), ids=str)
@pytest.mark.parametrize(("operator", "column"), CASES, ids=[f"{o.value}-{c}" for o, c in CASES])
def test_aggregate_matches_oracle(
    open_backend: OpenBackend,
    datasets: tuple[Dataset, ...],
    operator: Operator,
    column: str,
    kind: MissingValueKind,
) -> None:
    check_matrix(open_backend, datasets, (operator, column, kind), with_counts=False)


@pytest.mark.parametrize("kind", list(MissingValueKind), ids=str)
@pytest.mark.parametrize(
    ("operator", "column"), COUNTED_CASES, ids=[f"{o.value}-{c}" for o, c in COUNTED_CASES]
)
def test_counts_match_oracle(
    open_backend: OpenBackend,
    counted_datasets: tuple[Dataset, ...],
    operator: Operator,
    column: str,
    kind: MissingValueKind,
) -> None:
    """``with_counts``: the value as without, plus COUNT(*) and COUNT(raw column) per group."""
    check_matrix(open_backend, counted_datasets, (operator, column, kind), with_counts=True)


def test_request_mvt_overrides_the_family(open_backend: OpenBackend, edge: Dataset) -> None:
    backend = open_backend(edge)
    family = family_for(edge.ac, Operator.SUM, "revenue", MissingValueKind.SKIP)
    request = AggregateRequest(family, ("region",), mvt=MissingValueTreatment(MissingValueKind.PROPAGATE))
    assert_same_result(backend.aggregate(request).collect(), expected(edge, request))
    out = dict(backend.aggregate(request).collect().iter_rows())
    assert out["north"] is None  # would be 65.0 under the family's own SKIP


@pytest.mark.parametrize("schema", ["transactions", "stores", "campaigns"])
def test_extract_is_the_filtered_source(
    open_backend: OpenBackend, datasets: tuple[Dataset, ...], edge: Dataset, schema: str
) -> None:
    for dataset in datasets:
        spec = dataset.ac.schema(schema)
        frame = dataset.frames[spec.table]
        for cond in dataset.ac.filters_for(schema):
            assert cond.op in ("eq", "ne")  # the test ACs use no other filter
            test = pl.col(cond.column).eq(cond.value)
            frame = frame.filter(test if cond.op == "eq" else ~test)
        want = frame.select(list(spec.columns)).sort(pl.all())
        got = open_backend(dataset).extract_to_lazyframe(schema).collect().sort(pl.all())
        assert_frame_equal(got, want)
    # the filters really removed rows: another tenant's sale, the hidden store
    heights = {"transactions": 10, "stores": 3, "campaigns": 2}
    assert open_backend(edge).extract_to_lazyframe(schema).collect().height == heights[schema]


@pytest.mark.parametrize("grain", list(TimeGrain), ids=str)
@pytest.mark.parametrize("day_column", ["date", "timestamp"])
def test_time_buckets_match_the_pure_reference(
    open_backend: OpenBackend, request: pytest.FixtureRequest, day_column: str, grain: TimeGrain
) -> None:
    """One row per day over 2023-12-20..2025-01-10 (a leap year, two year boundaries, weeks that
    straddle them): the row count per bucket is the number of its days in range. The day comes
    from a date column or from a timestamp at the last microsecond of that day."""
    calendar: Dataset = request.getfixturevalue("calendar" if day_column == "date" else "calendar_ts")
    backend = open_backend(calendar)
    family = calendar.ac.family("transaction_count")
    dimension = next(d.name for d in calendar.ac.dimensions.values() if d.time_grain is grain)
    window = DateWindow(dt.date(2023, 12, 27), dt.date(2024, 12, 31))
    for days in ((CALENDAR_START, CALENDAR_END), (window.start, window.end)):
        aggregate = AggregateRequest(family, (dimension,), None if days[0] == CALENDAR_START else window)
        span = (days[1] - days[0]).days + 1
        counts = Counter(grain.bucket_start(days[0] + dt.timedelta(days=i)) for i in range(span))
        want = pl.DataFrame(
            sorted(counts.items()), schema={dimension: pl.Date, family.name: pl.Int64}, orient="row"
        )
        got = backend.aggregate(aggregate).collect().sort(dimension)
        assert_frame_equal(got, want)
