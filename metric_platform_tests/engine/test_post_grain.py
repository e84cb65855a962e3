"""Post-grain ops: hand-checked cases, declared order, and DuckDB's ROW_NUMBER() as the oracle."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metric_platform.engine.post_grain import Having, Limit, OrderBy, PostGrainOp, PostGrainOps, SortKey
from metric_platform.errors import InvalidRequestError

GRAIN = ("month", "region")
FRAME = pl.DataFrame(
    {
        "month": ["m1", "m1", "m1", "m2", "m2", "m2"],
        "region": ["a", "b", "c", "a", "b", "c"],
        "roas": [3.0, None, 5.0, 1.0, 5.0, 2.0],
        "revenue": [100, 50, 200, 10, 300, 5],
    }
)


def run(
    *ops: PostGrainOp, frame: pl.DataFrame = FRAME, grain: Sequence[str] = GRAIN
) -> list[tuple[Any, ...]]:
    return PostGrainOps(ops).apply(frame.lazy(), grain=grain).collect().select("month", "region").rows()


# --- hand-checked cases --------------------------------------------------------------------------


def test_no_ops_keep_the_input_order() -> None:
    reversed_frame = FRAME.reverse()
    assert run(frame=reversed_frame) == reversed_frame.select("month", "region").rows()


def test_having_keeps_only_true_rows() -> None:
    # roas is NULL for (m1, b): the condition is NULL there, so the row goes.
    assert run(Having("roas >= 2 or revenue > 1000")) == [("m1", "a"), ("m1", "c"), ("m2", "b"), ("m2", "c")]


def test_order_by_puts_nulls_last_both_ways_and_breaks_ties_by_grain() -> None:
    ascending = [("m2", "a"), ("m2", "c"), ("m1", "a"), ("m1", "c"), ("m2", "b"), ("m1", "b")]
    descending = [("m1", "c"), ("m2", "b"), ("m1", "a"), ("m2", "c"), ("m2", "a"), ("m1", "b")]
    for frame in (FRAME, FRAME.reverse(), FRAME.sample(fraction=1.0, shuffle=True, seed=3)):
        assert run(OrderBy.parse("roas"), frame=frame) == ascending
        assert run(OrderBy.parse("-roas"), frame=frame) == descending


def test_order_by_several_keys() -> None:
    expected = [("m1", "c"), ("m1", "a"), ("m1", "b"), ("m2", "b"), ("m2", "c"), ("m2", "a")]
    assert run(OrderBy((SortKey("month"), SortKey("roas", descending=True)))) == expected


def test_limit_without_order_by_orders_by_grain() -> None:
    assert run(Limit(2), frame=FRAME.reverse()) == [("m1", "a"), ("m1", "b")]


def test_limit_per_group_keeps_the_top_rows_of_each_group_ordered_by_group() -> None:
    ops = (OrderBy.parse("-roas"), Limit(1, per=("month",)))
    assert run(*ops, frame=FRAME.reverse()) == [("m1", "c"), ("m2", "b")]
    assert run(OrderBy.parse("-revenue"), Limit(2, per=("region",))) == [
        ("m1", "a"),
        ("m2", "a"),
        ("m2", "b"),
        ("m1", "b"),
        ("m1", "c"),
        ("m2", "c"),
    ]


def test_limit_per_several_columns_partitions_by_all_of_them() -> None:
    frame = pl.DataFrame({"g": ["x", "x", "x", "x"], "h": [1, 1, 2, 2], "k": [1, 2, 3, 4], "v": [4, 3, 2, 1]})
    ops = PostGrainOps((OrderBy.parse("v"), Limit(1, per=("g", "h"))))
    assert ops.apply(frame.lazy(), grain=("k",)).collect().get_column("k").to_list() == [2, 4]


def test_limit_per_without_order_by_keeps_the_first_by_grain() -> None:
    assert run(Limit(1, per=("region",)), frame=FRAME.reverse()) == [("m1", "a"), ("m1", "b"), ("m1", "c")]


def test_declared_order_matters() -> None:
    top_then_filter = run(OrderBy.parse("-revenue"), Limit(3), Having("roas > 4"))
    filter_then_top = run(OrderBy.parse("-revenue"), Having("roas > 4"), Limit(3))
    assert top_then_filter == [("m2", "b"), ("m1", "c")]  # of 300, 200, 100 only two pass
    assert filter_then_top == [("m2", "b"), ("m1", "c")]
    top_then_filter = run(OrderBy.parse("-revenue"), Limit(2), Having("roas < 4"))
    filter_then_top = run(OrderBy.parse("-revenue"), Having("roas < 4"), Limit(2))
    assert top_then_filter == []
    assert filter_then_top == [("m1", "a"), ("m2", "a")]


def test_order_by_after_limit_per_reorders() -> None:
    ops = (OrderBy.parse("-roas"), Limit(1, per=("month",)), OrderBy.parse("-revenue"))
    assert run(*ops) == [("m2", "b"), ("m1", "c")]


def test_limit_after_limit_per_uses_the_per_order() -> None:
    ops = (OrderBy.parse("revenue"), Limit(2, per=("month",)), Limit(3))
    assert run(*ops) == [("m1", "b"), ("m1", "a"), ("m2", "c")]


def test_empty_grain_and_derived_columns() -> None:
    frame = pl.DataFrame({"total": [1, 2, 3], "share": [0.5, None, 0.25]})
    result = PostGrainOps((OrderBy.parse("share"), Limit(2))).apply(frame.lazy(), grain=()).collect()
    assert result.get_column("total").to_list() == [3, 1]


def test_order_by_parse() -> None:
    assert OrderBy.parse(" -roas , month,+region") == OrderBy(
        (SortKey("roas", descending=True), SortKey("month"), SortKey("region"))
    )
    assert str(SortKey("roas", descending=True)) == "-roas"


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: Limit(0), "at least 1, got 0"),
        (lambda: Limit(-3), "at least 1"),
        (lambda: Limit(True), "whole number of rows"),
        (lambda: Limit(2.5), "whole number of rows"),  # type: ignore[arg-type]
        (lambda: Limit(1, per=("month", "month")), "names 'month' more than once"),
        (lambda: Limit(1, per=("",)), "needs column names"),
        (lambda: OrderBy(()), "at least one column"),
        (lambda: OrderBy.parse("-roas,,month"), "empty sort key in '-roas,,month'"),
        (lambda: OrderBy.parse("-"), "empty sort key"),
        (lambda: OrderBy.parse("roas,-roas"), "names 'roas' more than once"),
        (lambda: Having("roas >"), "cannot parse expression 'roas >'"),
        (lambda: Having("roas.real > 1"), "not allowed: attribute access"),
        (lambda: PostGrainOps(("roas",)), "got str"),  # type: ignore[arg-type]
    ],
)
def test_invalid_ops(build: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        build()
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("ops", "grain", "fragment"),
    [
        ((OrderBy.parse("-rosa"),), GRAIN, "ORDER BY names unknown column 'rosa'; did you mean 'roas'?"),
        (
            (Limit(1, per=("regon",)),),
            GRAIN,
            "LIMIT ... PER names unknown column 'regon'; did you mean 'region'?",
        ),
        ((Having("revenu > 1"),), GRAIN, "unknown column 'revenu'"),
        ((Having("revenue"),), GRAIN, "gives a number, not true/false"),
        ((Having("region > 1"),), GRAIN, "cannot compare 'region' (a string)"),
        ((), ("month", "week"), "the grain names unknown column 'week'"),
    ],
)
def test_apply_rejects_unknown_columns(
    ops: tuple[PostGrainOp, ...], grain: Sequence[str], fragment: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        PostGrainOps(ops).apply(FRAME.lazy(), grain=grain)
    assert fragment in str(caught.value)


# --- DuckDB as the oracle ------------------------------------------------------------------------

HAVINGS = [
    ("m1 > 1", "m1 > 1"),
    ("m2 <= 0.5 or is_null(m1)", "m2 <= 0.5 OR m1 IS NULL"),
    ("not (m1 == 2)", "NOT (m1 = 2)"),
    ("g1 != 'x'", "g1 <> 'x'"),
    ("m1 % 2 == 0 and m2 > -1", "m1 % 2 = 0 AND m2 > -1"),
]
SORTABLE = ["g1", "g2", "m1", "m2"]
PERS: list[tuple[str, ...]] = [("g1",), ("g2",), ("m1",), ("g1", "m1")]

OPS = st.one_of(
    st.sampled_from(HAVINGS).map(lambda pair: Having(pair[0])),
    st.lists(
        st.tuples(st.sampled_from(SORTABLE), st.booleans()), min_size=1, max_size=2, unique_by=lambda t: t[0]
    ).map(lambda keys: OrderBy(tuple(SortKey(column, descending) for column, descending in keys))),
    st.tuples(st.integers(1, 4), st.sampled_from([(), *PERS])).map(lambda t: Limit(t[0], per=t[1])),
)


@st.composite
def frames(draw: st.DrawFn) -> pl.DataFrame:
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(["x", "y", "z", None]), st.integers(0, 3)), max_size=10, unique=True
        )
    )
    n = len(keys)
    ties = st.none() | st.integers(0, 3)  # few values: many ties
    floats = st.none() | st.sampled_from([0.0, 0.5, 1.0, -2.0, math.nan])
    return pl.DataFrame(
        {
            "rid": list(range(n)),
            "g1": [key[0] for key in keys],
            "g2": [key[1] for key in keys],
            "m1": draw(st.lists(ties, min_size=n, max_size=n)),
            "m2": draw(st.lists(floats, min_size=n, max_size=n)),
        },
        schema={"rid": pl.Int64, "g1": pl.String, "g2": pl.Int64, "m1": pl.Int64, "m2": pl.Float64},
    )


def oracle_sql(ops: Sequence[PostGrainOp], grain: Sequence[str]) -> str:
    """The same ops as SQL: a row-number column carries the current order from step to step."""
    having_sql = dict(HAVINGS)
    by_grain = ", ".join(f"{column} ASC NULLS LAST" for column in grain)
    query, rn, ordered = "SELECT *, rid AS rn0 FROM t", "rn0", False
    for step, op in enumerate(ops, start=1):
        new_rn = f"rn{step}"
        if isinstance(op, Having):
            query = (
                f"SELECT * EXCLUDE ({rn}), {rn} AS {new_rn} FROM ({query}) WHERE {having_sql[op.expression]}"
            )
        elif isinstance(op, OrderBy):
            keys = ", ".join(f"{k.column} {'DESC' if k.descending else 'ASC'} NULLS LAST" for k in op.keys)
            window = f"row_number() OVER (ORDER BY {keys}, {by_grain})"
            query, ordered = f"SELECT * EXCLUDE ({rn}), {window} AS {new_rn} FROM ({query})", True
        else:
            if not ordered:
                window = f"row_number() OVER (ORDER BY {by_grain})"
                query, rn, ordered = (
                    f"SELECT * EXCLUDE ({rn}), {window} AS {rn}x FROM ({query})",
                    f"{rn}x",
                    True,
                )
            if op.per:
                partition = ", ".join(op.per)
                per_order = ", ".join(f"{column} ASC NULLS LAST" for column in op.per)
                rank = f"row_number() OVER (PARTITION BY {partition} ORDER BY {rn})"
                ranked = f"SELECT *, {rank} AS k FROM ({query})"
                renumber = f"row_number() OVER (ORDER BY {per_order}, {rn})"
                query = (
                    f"SELECT * EXCLUDE ({rn}, k), {renumber} AS {new_rn} FROM ({ranked}) WHERE k <= {op.n}"
                )
            else:
                query = f"SELECT * EXCLUDE ({rn}), {rn} AS {new_rn} FROM ({query}) ORDER BY {rn} LIMIT {op.n}"
        rn = new_rn
    return f"SELECT rid, g1, g2, m1, m2 FROM ({query}) ORDER BY {rn}"


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    yield con
    con.close()


def same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    return bool(left == right)


@given(frame=frames(), ops=st.lists(OPS, min_size=1, max_size=4), grain_order=st.booleans())
def test_matches_duckdb_row_number(
    duck: duckdb.DuckDBPyConnection, frame: pl.DataFrame, ops: list[PostGrainOp], grain_order: bool
) -> None:
    grain = ("g1", "g2") if grain_order else ("g2", "g1")
    ours = PostGrainOps(tuple(ops)).apply(frame.lazy(), grain=grain).collect().rows()
    duck.register("t", frame)
    try:
        sql = oracle_sql(ops, grain)
        expected = duck.execute(sql).fetchall()
    finally:
        duck.unregister("t")
    assert len(ours) == len(expected), sql
    assert all(
        same(a, b) for row, other in zip(ours, expected, strict=True) for a, b in zip(row, other, strict=True)
    ), f"{sql}\npolars: {ours}\nduckdb: {expected}"
