"""Frame expressions: hand-checked values, DuckDB as the oracle for SQL semantics, and every rejection."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metric_platform.engine.frame_expr import (
    DerivedMetric,
    FrameExpression,
    parse_assignment,
    parse_expression,
    parse_predicate,
    referenced_columns,
)
from metric_platform.errors import InvalidRequestError

FRAME = pl.DataFrame(
    {
        "revenue": [10.0, 0.0, None, 5.0],
        "spend": [4, 0, 1, None],
        "month": ["2026-01", "2026-02", None, "2026-04"],
        "day": [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3), None],
        "flag": [True, False, None, True],
    }
)


def evaluate(text: str, frame: pl.DataFrame = FRAME) -> list[Any]:
    # with_columns, as FrameExpression.apply does: a literal result is broadcast to every row.
    expr = parse_expression(text, columns=frame.schema).alias("__result")
    return frame.with_columns(expr).get_column("__result").to_list()


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    # DuckDB raises on integer // and % by zero unless told to give NULL, which is what we do.
    con.execute("SET error_on_division_by_zero = false")
    yield con
    con.close()


def same(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, float) or isinstance(right, float):
        left, right = float(left), float(right)
        if math.isnan(left) or math.isnan(right):
            return math.isnan(left) and math.isnan(right)
        return left == right or math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-12)
    return bool(left == right)


def assert_same(ours: Sequence[Any], oracle: Sequence[Any], context: str) -> None:
    assert len(ours) == len(oracle), context
    mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(ours, oracle, strict=True)) if not same(a, b)]
    assert not mismatches, f"{context}: (row, polars, duckdb) {mismatches}"


def duck_values(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, sql: str) -> list[Any]:
    numbered = frame.with_row_index("__rid")
    con.register("t", numbered)
    try:
        return [row[0] for row in con.execute(f"SELECT {sql} AS r FROM t ORDER BY __rid").fetchall()]
    finally:
        con.unregister("t")


# --- hand-checked values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("revenue - spend", [6.0, 0.0, None, None]),
        ("revenue / spend", [2.5, math.nan, None, None]),
        ("revenue / nullif(spend, 0)", [2.5, None, None, None]),
        ("spend / 0", [math.inf, math.nan, math.inf, None]),
        ("-spend // 3", [-1, 0, 0, None]),
        ("-spend % 3", [-1, 0, -1, None]),
        ("revenue // 0", [None, None, None, None]),
        ("round(revenue / 4)", [3.0, 0.0, None, 1.0]),  # 2.5 -> 3 and 1.25 -> 1: half away from zero
        ("coalesce(revenue, spend, -1)", [10.0, 0.0, 1.0, 5.0]),
        ("if_null(spend, 99)", [4, 0, 1, 99]),
        ("is_null(revenue) or is_null(spend)", [False, False, True, True]),
        ("least(revenue, spend)", [4.0, 0.0, 1.0, 5.0]),
        ("greatest(revenue, spend, null)", [10.0, 0.0, 1.0, 5.0]),
        ("log(revenue)", [1.0, -math.inf, None, math.log10(5)]),
        ("ln(revenue)", [math.log(10), -math.inf, None, math.log(5)]),
        ("sqrt(spend)", [2.0, 0.0, 1.0, None]),
        ("abs(-spend) + 1", [5, 1, 2, None]),
        ("0 < spend <= 1", [False, False, True, None]),
        ("flag and spend > 0", [True, False, None, None]),
        ("flag or null", [True, None, None, True]),
        ("not flag", [False, True, None, False]),
        ("month == '2026-02'", [False, True, None, False]),
        ("day >= '2026-01-02'", [False, True, True, None]),
        ("TRUE and not False", [True] * 4),
        ("Null", [None] * 4),
        ("  revenue   ", [10.0, 0.0, None, 5.0]),
    ],
)
def test_values(text: str, expected: list[Any]) -> None:
    assert_same(evaluate(text), expected, text)


@pytest.mark.parametrize("values", [[None, None], [0, 0]])
@pytest.mark.parametrize(
    "text",
    [
        "true == (a != null)",
        "is_null(0) == (a > null)",
        "(null + null) != nullif(a, a)",
        "1 < greatest(a, 0)",
        "least(0, nullif(0, a))",
        "nullif(0, nullif(0, a))",
    ],
)
def test_literal_against_constant_column_keeps_every_row(text: str, values: list[int | None]) -> None:
    # Polars 1.44 returns a single row for these unless the column side is evaluated on the left.
    frame = pl.DataFrame({"a": values}, schema={"a": pl.Int64})
    assert len(evaluate(text, frame)) == 2


def test_parse_without_schema_compiles_names_only() -> None:
    expr = parse_expression("revenue * 2 > spend", columns=["revenue", "spend"])
    assert FRAME.select(expr).to_series().to_list() == [True, False, None, None]


def test_referenced_columns_ignores_literals_and_functions() -> None:
    assert referenced_columns("coalesce(a, null) + b * abs(a) > 1 and true") == {"a", "b"}


# --- DuckDB as the oracle: fixed semantics -------------------------------------------------------

INTS = pl.DataFrame(
    {"a": [7, -7, 7, -7, 1, 0, None, 5, 0], "b": [2, 2, -2, -2, 0, 0, 1, None, 3]},
    schema={"a": pl.Int64, "b": pl.Int64},
)
FLOATS = INTS.select(pl.all().cast(pl.Float64))
BOOLS = pl.DataFrame(
    {"p": [True, True, True, False, False, False, None, None, None], "q": [True, False, None] * 3}
)


@pytest.mark.parametrize(
    ("frame", "text", "sql"),
    [
        (INTS, "a / b", "a / b"),  # true division; x/0 is inf or NaN in DuckDB 2.0
        (FLOATS, "a / b", "a / b"),
        (INTS, "a // b", "a // b"),  # truncates toward zero; NULL for zero divisors
        (INTS, "a % b", "a % b"),  # sign of the dividend
        (INTS, "a + b * -a - b", "a + b * -a - b"),
        (INTS, "a < b", "a < b"),
        (INTS, "a == b", "a = b"),
        (INTS, "a != b", "a <> b"),
        (FLOATS, "a / b == a / b", "a / b = a / b"),  # NaN equals NaN
        (FLOATS, "a / b > 1e300", "a / b > 1e300"),  # NaN is above every number
        (BOOLS, "p and q", "p AND q"),
        (BOOLS, "p or q", "p OR q"),
        (BOOLS, "not p", "NOT p"),
        (BOOLS, "p and not q or p", "p AND NOT q OR p"),
        (BOOLS, "p == q", "p = q"),
        (FLOATS, "round(a / 4, 1)", "round(a / 4, 1)"),
        (FLOATS, "round(a / b)", "round(a / b)"),
        (INTS, "round(a, 2)", "round(a, 2)"),
        (FLOATS, "log(a)", "log10(a)"),
        (FLOATS, "ln(a)", "ln(a)"),
        (FLOATS, "sqrt(a)", "sqrt(a)"),
        (INTS, "least(a, b)", "least(a, b)"),
        (FLOATS, "greatest(a / b, b)", "greatest(a / b, b)"),
        (FLOATS, "least(a / b, null)", "least(a / b, NULL)"),
        (INTS, "nullif(a, b)", "nullif(a, b)"),
        (INTS, "coalesce(b, a, 0)", "coalesce(b, a, 0)"),
        (INTS, "is_null(a / b)", "(a / b) IS NULL"),
        (INTS, "abs(a) + null", "abs(a) + NULL"),
    ],
)
def test_matches_duckdb(duck: duckdb.DuckDBPyConnection, frame: pl.DataFrame, text: str, sql: str) -> None:
    assert_same(evaluate(text, frame), duck_values(duck, frame, sql), text)


def test_float_floor_division_truncates_and_remainder_keeps_sign() -> None:
    # Documented deviation: DuckDB's float // is plain division; ours truncates like the integer case.
    frame = pl.DataFrame({"a": [7.5, -7.5, 7.5, 1.0], "b": [2.0, 2.0, -2.0, 0.0]})
    assert evaluate("a // b", frame) == [3.0, -3.0, -3.0, None]
    assert evaluate("a % b", frame) == [1.5, -1.5, 1.5, None]


# --- DuckDB as the oracle: random expressions ----------------------------------------------------

Pair = tuple[str, str]  # (our syntax, DuckDB SQL)

INT_LEAVES = st.sampled_from(["a", "b"]) | st.integers(-3, 5).map(lambda v: f"({v})")
FLOAT_LEAVES = st.just("c") | st.sampled_from([0.5, -1.5, 2.25]).map(repr)


def _sql_leaf(text: str) -> str:
    return f"CAST({text} AS DOUBLE)" if "." in text else text


@st.composite
def division_pairs(draw: st.DrawFn) -> Pair:
    """``//`` and ``%`` on leaves: native DuckDB for integers, the documented formula for floats."""
    op = draw(st.sampled_from(["//", "%"]))
    left = draw(INT_LEAVES | FLOAT_LEAVES | st.just("null"))
    right = draw(INT_LEAVES | FLOAT_LEAVES | st.just("null"))
    sql_left, sql_right = _sql_leaf(left).replace("null", "NULL"), _sql_leaf(right).replace("null", "NULL")
    text = f"({left} {op} {right})"
    if "c" not in (left, right) and "." not in left + right:
        return text, f"({sql_left} {op} {sql_right})"
    # DuckDB's float % is C's fmod (its fmod() function floors!); its float // is plain division.
    function = f"trunc({sql_left} / {sql_right})" if op == "//" else f"({sql_left} % {sql_right})"
    return text, f"(CASE WHEN {sql_right} = 0 THEN NULL ELSE {function} END)"


def _combine_numbers(children: st.SearchStrategy[Pair]) -> st.SearchStrategy[Pair]:
    binary = st.tuples(st.sampled_from(["+", "-", "*", "/"]), children, children).map(
        lambda t: (f"({t[1][0]} {t[0]} {t[2][0]})", f"({t[1][1]} {t[0]} {t[2][1]})")
    )
    # Not -(x): DuckDB 2.0 rewrites -x < NaN into x > -NaN and answers false.
    negate = children.map(lambda c: (f"(-{c[0]})", f"(-1 * ({c[1]}))"))
    unary = st.tuples(st.sampled_from(["abs", "sqrt", "ln", "log"]), children).map(
        lambda t: (f"{t[0]}({t[1][0]})", f"{'log10' if t[0] == 'log' else t[0]}({t[1][1]})")
    )
    rounded = st.tuples(children, st.integers(0, 2)).map(
        lambda t: (f"round({t[0][0]}, {t[1]})", f"round({t[0][1]}, {t[1]})")
    )
    sql_names = {"least": "least", "greatest": "greatest", "coalesce": "coalesce", "if_null": "coalesce"}
    variadic = st.tuples(st.sampled_from(sorted(sql_names)), children, children).map(
        lambda t: (f"{t[0]}({t[1][0]}, {t[2][0]})", f"{sql_names[t[0]]}({t[1][1]}, {t[2][1]})")
    )
    nullif = st.tuples(children, children).map(
        lambda t: (f"nullif({t[0][0]}, {t[1][0]})", f"nullif({t[0][1]}, {t[1][1]})")
    )
    return binary | negate | unary | rounded | variadic | nullif | division_pairs()


LEAF_PAIRS: st.SearchStrategy[Pair] = (INT_LEAVES | FLOAT_LEAVES).map(lambda v: (v, _sql_leaf(v))) | st.just(
    ("null", "NULL")
)
NUMBERS = st.recursive(LEAF_PAIRS, _combine_numbers, max_leaves=6)
SQL_COMPARISON = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _combine_booleans(children: st.SearchStrategy[Pair]) -> st.SearchStrategy[Pair]:
    logic = st.tuples(st.sampled_from(["and", "or"]), children, children).map(
        lambda t: (f"({t[1][0]} {t[0]} {t[2][0]})", f"({t[1][1]} {t[0].upper()} {t[2][1]})")
    )
    negated = children.map(lambda c: (f"(not {c[0]})", f"(NOT {c[1]})"))
    equal = st.tuples(children, children).map(
        lambda t: (f"({t[0][0]} == {t[1][0]})", f"({t[0][1]} = {t[1][1]})")
    )
    return logic | negated | equal


@st.composite
def comparisons(draw: st.DrawFn) -> Pair:
    ops = draw(st.lists(st.sampled_from(sorted(SQL_COMPARISON)), min_size=1, max_size=2))
    operands = [draw(NUMBERS) for _ in range(len(ops) + 1)]
    text = operands[0][0] + "".join(
        f" {op} {operand[0]}" for op, operand in zip(ops, operands[1:], strict=True)
    )
    parts = [
        f"{a[1]} {SQL_COMPARISON[op]} {b[1]}" for op, a, b in zip(ops, operands, operands[1:], strict=False)
    ]
    return f"({text})", "(" + " AND ".join(parts) + ")"


BOOLEAN_LEAVES = (
    comparisons()
    | NUMBERS.map(lambda n: (f"is_null({n[0]})", f"(({n[1]}) IS NULL)"))
    | st.sampled_from([("true", "TRUE"), ("false", "FALSE"), ("null", "NULL")])
)
BOOLEANS = st.recursive(BOOLEAN_LEAVES, _combine_booleans, max_leaves=4)

FRAMES = (
    st.integers(0, 6)
    .flatmap(
        lambda n: st.fixed_dictionaries(
            {
                "a": st.lists(st.none() | st.integers(-4, 4), min_size=n, max_size=n),
                "b": st.lists(st.none() | st.integers(-2, 3), min_size=n, max_size=n),
                "c": st.lists(
                    st.none() | st.sampled_from([0.0, 0.5, -1.5, 2.5, 3.0]), min_size=n, max_size=n
                ),
            }
        )
    )
    .map(lambda data: pl.DataFrame(data, schema={"a": pl.Int64, "b": pl.Int64, "c": pl.Float64}))
)


@given(frame=FRAMES, pair=NUMBERS)
def test_random_arithmetic_matches_duckdb(
    duck: duckdb.DuckDBPyConnection, frame: pl.DataFrame, pair: Pair
) -> None:
    text, sql = pair
    assert_same(evaluate(text, frame), duck_values(duck, frame, sql), f"{text}  vs  {sql}")


@given(frame=FRAMES, pair=BOOLEANS)
def test_random_logic_matches_duckdb(
    duck: duckdb.DuckDBPyConnection, frame: pl.DataFrame, pair: Pair
) -> None:
    text, sql = pair
    assert_same(evaluate(text, frame), duck_values(duck, frame, sql), f"{text}  vs  {sql}")
    kept = frame.filter(parse_predicate(text, columns=frame.schema))
    numbered = frame.with_row_index("__rid")
    duck.register("t", numbered)
    try:
        oracle = duck.execute(f"SELECT a, b, c FROM t WHERE {sql} ORDER BY __rid").fetchall()
    finally:
        duck.unregister("t")
    assert len(kept) == len(oracle), text
    assert all(map(same_row, kept.rows(), oracle)), text


def same_row(left: tuple[Any, ...], right: tuple[Any, ...]) -> bool:
    return all(same(a, b) for a, b in zip(left, right, strict=True))


# --- rejections ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("revenue.real", "not allowed: attribute access"),
        ("revenue.__class__", "not allowed: attribute access"),
        ("month[0]", "not allowed: subscripts"),
        ("lambda: 1", "not allowed: lambda"),
        ("[x for x in spend]", "not allowed: comprehensions"),
        ("{x for x in spend}", "not allowed: comprehensions"),
        ("{x: 1 for x in spend}", "not allowed: comprehensions"),
        ("abs(x for x in spend)", "not allowed: generator expressions"),
        ("f'{revenue}'", "not allowed: f-strings"),
        ("(x := 1)", "not allowed: assignment expressions"),
        ("revenue if flag else spend", "not allowed: conditional expressions"),
        ("[1, 2]", "not allowed: list literals"),
        ("(1, 2)", "not allowed: tuples"),
        ("{1, 2}", "not allowed: set literals"),
        ("{'a': 1}", "not allowed: dict literals"),
        ("abs(*spend)", "not allowed: starred arguments"),
        ("spend ** 2", "not allowed: '**'"),
        ("flag & flag", "not allowed: '&' (use 'and')"),
        ("flag | flag", "not allowed: '|' (use 'or')"),
        ("spend ^ 1", "not allowed: '^'"),
        ("spend << 1", "not allowed: '<<'"),
        ("spend >> 1", "not allowed: '>>'"),
        ("spend @ spend", "not allowed: '@'"),
        ("~flag", "not allowed: '~' (use 'not')"),
        ("spend in (1, 2)", "not allowed: 'in'"),
        ("spend not in (1, 2)", "not allowed: 'not in'"),
        ("spend is None", "not allowed: 'is' (use is_null(x))"),
        ("spend is not None", "not allowed: 'is not'"),
        ("b'x'", "not allowed: the literal"),
        ("1j", "not allowed: the literal"),
        ("...", "not allowed: the literal"),
        ("eval('1')", "function 'eval' is not allowed"),
        ("__import__('os')", "function '__import__' is not allowed"),
        ("sqr(spend)", "did you mean 'sqrt'?"),
        ("revenue.abs()", "not allowed: attribute access"),
        ("abs(x=spend)", "abs() takes no keyword arguments"),
        ("abs(spend, 1)", "abs() takes 1 argument(s), got 2"),
        ("round()", "round() takes 1 to 2 argument(s), got 0"),
        ("coalesce()", "coalesce() takes at least 1 argument(s), got 0"),
        ("round(revenue, -1)", "round()'s second argument must be a whole number"),
        ("round(revenue, spend)", "round()'s second argument must be a whole number"),
        ("round(revenue, 99)", "round() digits must be between 0 and 38"),
        ("99999999999999999999", "does not fit in 64 bits"),
        ("1e999", "is too large"),
        (
            "revnue * 2",
            "unknown column 'revnue' at column 1 of expression 'revnue * 2'; did you mean 'revenue'?",
        ),
        ("revenue * spnd", "unknown column 'spnd' at column 11"),
        ("month + 1", "'+' needs numbers, but 'month' is a string"),
        ("-flag", "unary '-' needs numbers, but 'flag' is true/false"),
        ("abs(month)", "abs() needs numbers"),
        ("spend and flag", "'and' needs true/false, but 'spend' is a number"),
        ("not revenue", "'not' needs true/false"),
        ("month < 1", "cannot compare 'month' (a string) with '1' (a number)"),
        ("day < 1", "cannot compare 'day' (a date/time) with '1' (a number)"),
        ("day > '2026-13-01'", "'2026-13-01' is not a date"),
        ("coalesce(month, revenue)", "the arguments of coalesce() must be of one kind"),
        ("least(flag, flag)", "the arguments of least() must be of one kind"),
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("x" * 10_001, "at most 10000 are accepted"),
        ("-" * 5000 + "spend", "nested too deeply"),
    ],
)
def test_rejected(text: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_expression(text, columns=FRAME.schema)
    assert fragment in str(caught.value)


def test_rejection_lists_what_is_allowed() -> None:
    with pytest.raises(InvalidRequestError, match=r"allowed are numbers.*and the functions abs, round"):
        parse_expression("spend ** 2", columns=["spend"])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("revenue +* 2", "invalid syntax at column 10"),
        ("  revenue +* 2", "invalid syntax at column 12"),  # leading blanks count
        ("(revenue", "'(' was never closed at column 1"),
        ("é + (", "'(' was never closed at column 5"),  # characters, not UTF-8 bytes
        ("revenue = 1", "compare with '=='"),
        ("revenue > 1 AND spend > 0", "write 'and', 'or', 'not' in lower case"),
        ("revenue <> 1", "write '!=' for 'not equal'"),
        ("revenue\0", "cannot parse expression"),
    ],
)
def test_syntax_errors_say_where(text: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match="cannot parse expression") as caught:
        parse_expression(text, columns=["revenue", "spend"])
    assert fragment in str(caught.value)


def test_positions_count_characters_after_non_ascii_text() -> None:
    with pytest.raises(InvalidRequestError, match="unknown column 'x' at column 16"):
        parse_expression("'é' == 'é' and x", columns=[])


def test_predicate_must_be_boolean() -> None:
    with pytest.raises(
        InvalidRequestError, match=r"gives a number, not true/false; compare it: 'revenue > 0'"
    ):
        parse_predicate("revenue", columns=FRAME.schema)
    assert FRAME.filter(parse_predicate("null", columns=FRAME.schema)).is_empty()


# --- assignments, derived metrics, frame expressions ---------------------------------------------


def test_parse_assignment() -> None:
    name, expr = parse_assignment(" roas = revenue / nullif(spend, 0) ", columns=FRAME.schema)
    assert name == "roas"
    assert FRAME.select(expr).to_series().to_list() == [2.5, None, None, None]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("roas==revenue", "expected NAME=EXPRESSION"),
        ("revenue/spend", "expected NAME=EXPRESSION"),
        ("1x=revenue", "'1x' cannot name a derived metric"),
        ("and=revenue", "'and' cannot name a derived metric"),
        ("null=revenue", "'null' cannot name a derived metric"),
        ("revenue=spend", "would replace the existing column 'revenue'"),
        ("roas=", "empty expression"),
        ("roas=revenue/spnd", "did you mean 'spend'?"),
    ],
)
def test_parse_assignment_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_assignment(text, columns=FRAME.schema)
    assert fragment in str(caught.value)


def test_frame_expression_adds_columns_in_order_and_later_ones_see_earlier_ones() -> None:
    frame_expression = FrameExpression(
        (
            DerivedMetric.parse("profit=revenue - spend"),
            DerivedMetric("margin", "profit / nullif(revenue, 0)"),
            DerivedMetric.parse("good = margin > 0.5"),
        )
    )
    result = frame_expression.apply(FRAME.lazy()).collect()
    assert result.columns == [*FRAME.columns, "profit", "margin", "good"]
    assert result.get_column("profit").to_list() == [6.0, 0.0, None, None]
    assert result.get_column("margin").to_list() == [0.6, None, None, None]
    assert result.get_column("good").to_list() == [True, None, None, None]
    assert result.schema["good"] == pl.Boolean


def test_frame_expression_checks_types_of_earlier_derived_metrics() -> None:
    frame_expression = FrameExpression((DerivedMetric("big", "revenue > 1"), DerivedMetric("x", "big + 1")))
    with pytest.raises(InvalidRequestError, match=r"'\+' needs numbers, but 'big' is true/false"):
        frame_expression.apply(FRAME.lazy())


@pytest.mark.parametrize(
    ("derived", "fragment"),
    [
        ((DerivedMetric("a", "revenue"), DerivedMetric("b", "spend")), None),
        ((DerivedMetric("month", "revenue"),), "would replace the existing column 'month'"),
        ((DerivedMetric("b", "a + 1"), DerivedMetric("a", "revenue")), "unknown column 'a'"),
    ],
)
def test_frame_expression_apply_errors(derived: tuple[DerivedMetric, ...], fragment: str | None) -> None:
    frame_expression = FrameExpression(derived)
    if fragment is None:
        assert frame_expression.apply(FRAME.lazy()).collect().width == FRAME.width + 2
        return
    with pytest.raises(InvalidRequestError) as caught:
        frame_expression.apply(FRAME.lazy())
    assert fragment in str(caught.value)


def test_derived_metric_validation() -> None:
    with pytest.raises(InvalidRequestError, match="refers to itself"):
        DerivedMetric("roas", "roas * 2")
    with pytest.raises(InvalidRequestError, match="not allowed: attribute access"):
        DerivedMetric("roas", "revenue.real")
    with pytest.raises(InvalidRequestError, match="cannot name a derived metric"):
        DerivedMetric("my metric", "revenue")
    with pytest.raises(InvalidRequestError, match="defined more than once: a"):
        FrameExpression((DerivedMetric("a", "revenue"), DerivedMetric("a", "spend")))
