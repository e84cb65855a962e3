"""An independent oracle for ``aggregate``: hand-written DuckDB SQL over the Polars source frames.

It shares no code with the backends (no plan, no SQLAlchemy, no Polars expressions): joins, filters,
buckets and null treatments are spelled out as SQL text here, so a bug in the shared planner or in
one dialect shows up as a disagreement with DuckDB.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import duckdb
import polars as pl
from polars.testing import assert_frame_equal

from metric_platform.backends.normalize import NONNULL_COLUMN, ROWS_COLUMN, result_schema
from metric_platform.backends.protocol import AggregateRequest
from metric_platform.semantics.spec import AnalyticalContext, FilterCondition, JoinSpec
from metric_platform.semantics.types import MissingValueKind

_OPS = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_AGG = {
    "SUM": "sum({x})",
    "COUNT": "count({x})",
    "MIN": "min({x})",
    "MAX": "max({x})",
    "BOOL_AND": "bool_and({x})",
    "BOOL_OR": "bool_or({x})",
    "AVG": "avg({x})",
    "MEDIAN": "quantile_cont({x}, 0.5)",
    "COUNT_DISTINCT": "count(DISTINCT {x})",
}


def sql_literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def _condition(alias: str, cond: FilterCondition) -> str:
    column = f'{alias}."{cond.column}"'
    if cond.op == "is_null":
        return f"{column} IS NULL"
    if cond.op == "not_null":
        return f"{column} IS NOT NULL"
    if cond.op in ("in", "not_in"):
        assert isinstance(cond.value, tuple)
        items = ", ".join(sql_literal(v) for v in cond.value)
        return f"{column} {'IN' if cond.op == 'in' else 'NOT IN'} ({items})"
    return f"{column} {_OPS[cond.op]} {sql_literal(cond.value)}"


class Oracle:
    """What ``aggregate`` must return for one AC over ``frames`` (keyed by table name, logical
    column names: the test ACs have no name_map), computed by DuckDB."""

    def __init__(self, ac: AnalyticalContext, frames: Mapping[str, pl.DataFrame]) -> None:
        self._ac = ac
        self._con = duckdb.connect()
        for spec in ac.schemas.values():
            # Copied into DuckDB tables: a query over them is ~25% faster than over Arrow views.
            self._con.register("incoming", frames[spec.table].to_arrow())
            self._con.execute(f"CREATE TABLE {spec.name} AS SELECT * FROM incoming")
            self._con.unregister("incoming")

    def aggregate(self, request: AggregateRequest) -> pl.DataFrame:
        schema = result_schema(self._ac, request.family, request.anchor, with_counts=request.with_counts)
        out: pl.DataFrame = self._con.sql(self.query(request)).pl()
        return out.select(pl.col(name).cast(dtype) for name, dtype in schema.items())

    def query(self, request: AggregateRequest) -> str:
        ac, family = self._ac, request.family
        root = family.root_schema
        aliases: dict[tuple[JoinSpec, ...], str] = {(): "t0"}
        joins: list[str] = []

        def alias(path: tuple[JoinSpec, ...]) -> str:
            if path not in aliases:
                parent = alias(path[:-1])
                join = path[-1]
                name = aliases[path] = f"j{len(aliases)}"
                keys = ac.dimension(join.on).columns
                on = [f'{parent}."{keys[join.from_schema]}" = {name}."{keys[join.to_schema]}"']
                on += [_condition(name, c) for c in ac.filters_for(join.to_schema)]
                joins.append(f"LEFT JOIN {join.to_schema} AS {name} ON {' AND '.join(on)}")
            return aliases[path]

        keys = []
        for binding in ac.bindings(root, request.anchor):
            column = f'{alias(binding.join_path)}."{binding.column}"'
            if binding.time_grain is not None:
                column = f"CAST(date_trunc('{binding.time_grain.value}', {column}) AS DATE)"
            keys.append(f'{column} AS "{binding.dimension}"')
        where = [_condition("t0", c) for c in ac.filters_for(root)]
        if request.window is not None:
            assert ac.day_dimension is not None
            day = ac.binding(root, ac.day_dimension)
            assert day is not None
            start, end = sql_literal(request.window.start), sql_literal(request.window.end)
            where.append(f'{alias(day.join_path)}."{day.column}" BETWEEN {start} AND {end}')
        raw = x = f't0."{family.root_column}"'
        treatment = request.treatment
        if treatment.kind is MissingValueKind.IMPUTE:
            x = f"coalesce({x}, {sql_literal(treatment.value)})"
        value = _AGG[family.operator.value].format(x=x)
        if treatment.kind is MissingValueKind.PROPAGATE:
            value = f"CASE WHEN count({x}) = count(*) THEN {value} END"
        columns = [*keys, f'{value} AS "{family.name}"']
        if request.with_counts:
            columns += [f'count(*) AS "{ROWS_COLUMN}"', f'count({raw}) AS "{NONNULL_COLUMN}"']
        select = ", ".join(columns)
        query = f"SELECT {select} FROM {root} AS t0 {' '.join(joins)}"
        if where:
            query += " WHERE " + " AND ".join(where)
        if keys:
            query += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(keys)))
        return query

    def close(self) -> None:
        self._con.close()


def assert_same_result(actual: pl.DataFrame, expected: pl.DataFrame, *, context: str = "") -> None:
    """Equal as sets of rows (SQL has no row order): same columns, dtypes, values and nulls; floats
    within a relative 1e-9 (summation order differs between engines)."""
    assert actual.schema == expected.schema, f"{context}: schema {actual.schema} != {expected.schema}"
    keys = list(actual.columns)  # the anchor values identify a row; the rest only break no tie
    try:
        assert_frame_equal(
            actual.sort(keys, nulls_last=True),
            expected.sort(keys, nulls_last=True),
            check_exact=False,
            rel_tol=1e-9,
            abs_tol=1e-9,
        )
    except AssertionError as exc:
        msg = f"{context}\nactual:\n{actual.sort(keys)}\nexpected:\n{expected.sort(keys)}\n{exc}"
        raise AssertionError(msg) from None
