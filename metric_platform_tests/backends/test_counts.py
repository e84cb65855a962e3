"""``AggregateRequest(with_counts=True)``: exact ``__rows``/``__nonnull`` on the hand-made edge cases,
per backend, and the rollups they make SQL-exact (ARCHITECTURE.md §9).

Rows by region (see test_edge_cases.py): north = S1, revenue 10, 20, 30, 5, NULL; south = S2,
revenue NULL, NULL, 40; NULL region = S4 and S3, revenue 7, 3.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from metric_platform.backends.normalize import NONNULL_COLUMN, ROWS_COLUMN, result_schema
from metric_platform.backends.protocol import AggregateRequest, DateWindow
from metric_platform.backends.sql_backend import SqlBackend
from metric_platform.db import create_db_engine
from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.spec import MetricFamily
from metric_platform.semantics.types import MissingValueKind, MissingValueTreatment
from metric_platform_tests.backends.conftest import OpenBackend
from metric_platform_tests.backends.datasets import Dataset

D = dt.date
SKIP = MissingValueTreatment()
PROPAGATE = MissingValueTreatment(MissingValueKind.PROPAGATE)
IMPUTE = MissingValueTreatment(MissingValueKind.IMPUTE, 2.5)
TREATMENTS = [SKIP, PROPAGATE, IMPUTE]
EMPTY_WINDOW = DateWindow(D(2026, 5, 1), D(2026, 5, 31))


def family(edge: Dataset, operator: Operator = Operator.SUM, column: str = "revenue") -> MetricFamily:
    base = edge.ac.family("revenue")
    return replace(base, name="v", root_column=column, reducer=replace(base.reducer, operator=operator))


def counted(
    open_backend: OpenBackend,
    edge: Dataset,
    anchor: tuple[str, ...],
    *,
    operator: Operator = Operator.SUM,
    column: str = "revenue",
    mvt: MissingValueTreatment = SKIP,
    window: DateWindow | None = None,
) -> dict[Any, tuple[Any, int, int]]:
    """{anchor value (a tuple for several dims, () for none): (value, rows, non-null)}."""
    fam = family(edge, operator, column)
    request = AggregateRequest(fam, anchor, window, mvt, with_counts=True)
    frame = open_backend(edge).aggregate(request).collect()
    assert frame.schema == result_schema(edge.ac, fam, anchor, with_counts=True)
    assert frame.columns[-2:] == [ROWS_COLUMN, NONNULL_COLUMN]
    width = len(anchor)
    out = {}
    for row in frame.iter_rows():
        key = row[0] if width == 1 else row[:width]
        out[key] = (row[width], row[width + 1], row[width + 2])
    return out


@pytest.mark.parametrize(
    ("mvt", "values"),
    [(SKIP, (65.0, 40.0, 10.0)), (PROPAGATE, (None, None, 10.0)), (IMPUTE, (67.5, 45.0, 10.0))],
    ids=str,
)
def test_counts_by_region(
    open_backend: OpenBackend, edge: Dataset, mvt: MissingValueTreatment, values: tuple[Any, ...]
) -> None:
    # the non-null count is of the raw column: imputing does not change it
    north, south, none = values
    want = {"north": (north, 5, 4), "south": (south, 3, 1), None: (none, 2, 2)}
    assert counted(open_backend, edge, ("region",), mvt=mvt) == want


@pytest.mark.parametrize(
    ("operator", "column", "want"),
    [
        (Operator.SUM, "conversions", (None, 2, 0)),
        (Operator.COUNT, "conversions", (0, 2, 0)),
        (Operator.MAX, "conversions", (None, 2, 0)),
        (Operator.BOOL_AND, "is_returned", (None, 2, 0)),
        (Operator.COUNT_DISTINCT, "customer_id", (1, 2, 1)),  # customers "a" and NULL
    ],
    ids=str,
)
def test_counts_of_an_all_null_group(
    open_backend: OpenBackend, edge: Dataset, operator: Operator, column: str, want: tuple[Any, ...]
) -> None:
    key = ("S2", D(2026, 3, 3))  # two rows, NULL in every value column but one customer
    assert counted(open_backend, edge, ("store", "day"), operator=operator, column=column)[key] == want


@pytest.mark.parametrize("mvt", TREATMENTS, ids=str)
def test_empty_window_counts(open_backend: OpenBackend, edge: Dataset, mvt: MissingValueTreatment) -> None:
    """No anchor: one row over zero rows, counts 0; an anchor: no row, typed with the counts."""
    assert counted(open_backend, edge, (), mvt=mvt, window=EMPTY_WINDOW) == {(): (None, 0, 0)}
    count = counted(open_backend, edge, (), operator=Operator.COUNT, mvt=mvt, window=EMPTY_WINDOW)
    assert count == {(): (0, 0, 0)}
    assert counted(open_backend, edge, ("region", "month"), mvt=mvt, window=EMPTY_WINDOW) == {}


def _rollup(fine: pl.DataFrame, keys: list[str], mvt: MissingValueTreatment) -> pl.DataFrame:
    """SUM rolled up from finer groups with their counts, as SQL gives it over the raw rows."""
    value, rows, nonnull = pl.col("v").sum(), pl.col(ROWS_COLUMN).sum(), pl.col(NONNULL_COLUMN).sum()
    match mvt.kind:
        case MissingValueKind.SKIP:
            rolled = pl.when(nonnull > 0).then(value)  # all-NULL stays NULL, not 0
        case MissingValueKind.PROPAGATE:
            rolled = pl.when(nonnull == rows).then(value)  # a NULL anywhere below makes NULL
        case MissingValueKind.IMPUTE:
            rolled = pl.when(rows > 0).then(value)
    return fine.group_by(keys).agg(rolled.alias("v"), rows.alias(ROWS_COLUMN), nonnull.alias(NONNULL_COLUMN))


@pytest.mark.parametrize("mvt", TREATMENTS, ids=str)
def test_counts_make_rollups_exact(
    open_backend: OpenBackend, edge: Dataset, mvt: MissingValueTreatment
) -> None:
    """(region, day) rolled up to (region) and to () equals the backend's own answer there."""
    backend, fam = open_backend(edge), family(edge)
    fine = backend.aggregate(AggregateRequest(fam, ("region", "day"), mvt=mvt, with_counts=True)).collect()
    for keys in (["region"], []):
        direct = backend.aggregate(AggregateRequest(fam, tuple(keys), mvt=mvt, with_counts=True)).collect()
        rolled = _rollup(fine, keys, mvt) if keys else _rollup(fine.with_columns(k=0), ["k"], mvt).drop("k")
        order = keys or ["v"]
        want = direct.sort(order, nulls_last=True).to_dicts()
        assert rolled.sort(order, nulls_last=True).to_dicts() == want, keys


def test_count_column_names_are_reserved(open_backend: OpenBackend, edge: Dataset) -> None:
    clash = replace(family(edge), name=ROWS_COLUMN)
    with pytest.raises(InvalidRequestError, match=r"with_counts adds the columns __rows, __nonnull"):
        open_backend(edge).aggregate(AggregateRequest(clash, ("region",), with_counts=True))
    # without the counts the name is free
    assert open_backend(edge).aggregate(AggregateRequest(clash, ("region",))).collect().height == 3


def test_counts_come_from_one_query_or_plan(
    open_backend: OpenBackend, backend_kind: str, edge: Dataset, request: pytest.FixtureRequest
) -> None:
    """Polars: one aggregation over one scan per table; SQL: one SELECT. No second pass."""
    counted = AggregateRequest(family(edge), ("region", "month"), mvt=PROPAGATE, with_counts=True)
    if backend_kind == "polars":
        plan = open_backend(edge).aggregate(counted).explain()
        assert plan.count("AGGREGATE") == 1
        assert plan.count("Parquet SCAN") == 2  # transactions, stores
        return
    open_backend(edge)  # loads the PostgreSQL data on first use
    url: str = edge.sqlite_url if backend_kind == "sqlite" else request.getfixturevalue("pg_url")
    engine = create_db_engine(url, read_only=True)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    backend = SqlBackend(edge.ac, engine)
    try:
        backend.aggregate(counted).collect()  # the first read also inspects the tables
        statements.clear()
        assert backend.aggregate(counted).collect().height == 4
    finally:
        backend.close()
        engine.dispose()
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1, statements
    assert "count(*)" in selects[0].lower()
