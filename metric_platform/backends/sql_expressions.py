"""SQLAlchemy Core expressions per dialect (SQLite, PostgreSQL): tables, filters, time buckets and
reducers with the platform's missing-value treatments.

Constants inside expressions (date_trunc units, SQLite date modifiers) are rendered inline, not as
bound parameters: PostgreSQL matches GROUP BY expressions to SELECT expressions textually, and two
bound parameters never match. SQLite has no MEDIAN, so :class:`SqliteMedian` is registered on every
connection as ``mp_median`` (see ``register_sqlite_functions``).
"""

from __future__ import annotations

from typing import Any, assert_never

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from metric_platform.semantics.operators import Operator, result_type
from metric_platform.semantics.spec import FilterCondition, FilterOp, FilterValue, SchemaSpec
from metric_platform.semantics.types import ColumnType, MissingValueKind, TimeGrain

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_MEDIAN_FUNCTION = "mp_median"


def sa_type(column_type: ColumnType) -> TypeEngine[Any]:
    """The SQLAlchemy type whose result processing turns SQLite's 0/1 and ISO text into Python values."""
    match column_type:
        case ColumnType.INTEGER:
            return sa.BigInteger()
        case ColumnType.FLOAT:
            return sa.Double()
        case ColumnType.STRING:
            return sa.Text()
        case ColumnType.BOOLEAN:
            return sa.Boolean()
        case ColumnType.DATE:
            return sa.Date()
        case ColumnType.TIMESTAMP:
            return sa.DateTime()
        case _:
            assert_never(column_type)


def table_for(spec: SchemaSpec, metadata: sa.MetaData) -> sa.Table:
    """The table of ``spec`` with its physical column names and declared types."""
    columns = [sa.Column(spec.physical(name), sa_type(ctype)) for name, ctype in spec.columns.items()]
    return sa.Table(spec.table, metadata, *columns, schema=spec.db_schema)


def filter_clause(cond: FilterCondition, column: ColumnElement[Any]) -> ColumnElement[bool]:
    value = cond.value
    values = list(value) if isinstance(value, tuple) else [value]
    match cond.op:
        case FilterOp.EQ:
            return column == value
        case FilterOp.NE:
            return column != value
        case FilterOp.LT:
            return column < value
        case FilterOp.LE:
            return column <= value
        case FilterOp.GT:
            return column > value
        case FilterOp.GE:
            return column >= value
        case FilterOp.IN:
            return column.in_(values)
        case FilterOp.NOT_IN:
            return column.not_in(values)
        case FilterOp.IS_NULL:
            return column.is_(None)
        case FilterOp.NOT_NULL:
            return column.is_not(None)
        case _:
            assert_never(cond.op)


def _const(text: str) -> ColumnElement[Any]:
    """An inline SQL string constant (internal vocabulary only, never user input)."""
    return sa.literal_column(f"'{text}'")


def as_day(column: ColumnElement[Any], column_type: ColumnType, dialect: str) -> ColumnElement[Any]:
    """A date or timestamp column as the event day (a DATE; ISO text on SQLite)."""
    if column_type is ColumnType.DATE:
        return column
    if dialect == SQLITE:
        return sa.type_coerce(sa.func.date(column), sa.Date())
    return sa.cast(column, sa.Date())


def bucket(
    column: ColumnElement[Any], column_type: ColumnType, grain: TimeGrain, dialect: str
) -> ColumnElement[Any]:
    """The first day of the ``grain`` bucket holding each value; matches ``TimeGrain.bucket_start``."""
    day = as_day(column, column_type, dialect)
    if grain is TimeGrain.DAY:
        return day
    if dialect == POSTGRESQL:
        # date_trunc's weeks are ISO weeks (Monday). Cast to timestamp first: on a bare date PG
        # would pick the timestamptz overload and depend on the session time zone.
        truncated = sa.func.date_trunc(_const(grain.value), sa.cast(day, sa.TIMESTAMP()))
        return sa.cast(truncated, sa.Date())
    match grain:
        case TimeGrain.WEEK:
            # 6 days back, then forward to the next Monday (or stay): the Monday on or before.
            expr = sa.func.date(day, _const("-6 days"), _const("weekday 1"))
        case TimeGrain.MONTH:
            expr = sa.func.date(day, _const("start of month"))
        case TimeGrain.QUARTER:
            month = sa.cast(sa.func.strftime(_const("%m"), day), sa.Integer())
            offset = sa.func.printf(_const("+%d months"), (month - 1) // 3 * 3)
            expr = sa.func.date(day, _const("start of year"), offset)
        case TimeGrain.YEAR:
            expr = sa.func.date(day, _const("start of year"))
        case _:
            assert_never(grain)
    return sa.type_coerce(expr, sa.Date())


def reduce(
    operator: Operator,
    treatment: MissingValueKind,
    x: ColumnElement[Any],
    *,
    value_type: ColumnType,
    impute: FilterValue | None,
    dialect: str,
) -> ColumnElement[Any]:
    """The aggregate of ``x`` with SQL's null semantics, typed as ``result_type`` of the operator."""
    match treatment:
        case MissingValueKind.SKIP:
            value = _aggregate(operator, x, value_type, dialect)
        case MissingValueKind.PROPAGATE:
            # COUNT(x) < COUNT(*) exactly when the group holds a NULL.
            complete = sa.func.count(x) == sa.func.count()
            value = sa.case((complete, _aggregate(operator, x, value_type, dialect)), else_=sa.null())
        case MissingValueKind.IMPUTE:
            filled = sa.func.coalesce(x, sa.literal(impute, sa_type(value_type)), type_=x.type)
            value = _aggregate(operator, filled, value_type, dialect)
        case _:
            assert_never(treatment)
    out_type = result_type(operator, value_type)
    if out_type.is_numeric:
        # PostgreSQL's SUM(bigint) and AVG are NUMERIC (Python Decimal): cast to the declared type.
        return sa.cast(value, sa_type(out_type))
    return sa.type_coerce(value, sa_type(out_type))


def _aggregate(
    operator: Operator, x: ColumnElement[Any], value_type: ColumnType, dialect: str
) -> ColumnElement[Any]:
    match operator:
        case Operator.SUM:
            return sa.func.sum(x)
        case Operator.COUNT:
            return sa.func.count(x)
        case Operator.MIN:
            return sa.func.min(_bytewise(x, value_type, dialect))
        case Operator.MAX:
            return sa.func.max(_bytewise(x, value_type, dialect))
        case Operator.BOOL_AND:
            # SQLite stores booleans as 0/1: MIN is AND, MAX is OR (NULL over no value, like SQL).
            return sa.func.bool_and(x) if dialect == POSTGRESQL else sa.func.min(x)
        case Operator.BOOL_OR:
            return sa.func.bool_or(x) if dialect == POSTGRESQL else sa.func.max(x)
        case Operator.AVG:
            return sa.func.avg(x)
        case Operator.MEDIAN:
            if dialect == POSTGRESQL:
                return sa.func.percentile_cont(0.5).within_group(x)
            return getattr(sa.func, _MEDIAN_FUNCTION)(x)  # type: ignore[no-any-return]
        case Operator.COUNT_DISTINCT:
            return sa.func.count(sa.distinct(x))
        case _:
            assert_never(operator)


def _bytewise(x: ColumnElement[Any], value_type: ColumnType, dialect: str) -> ColumnElement[Any]:
    # PostgreSQL orders text by the database's locale; Polars and SQLite compare bytes.
    if value_type is ColumnType.STRING and dialect == POSTGRESQL:
        return x.collate("C")
    return x


class SqliteMedian:
    """SQLite aggregate: the median of the non-NULL values, the mean of the middle two for an even
    count (PostgreSQL's ``percentile_cont(0.5)``), NULL over no value."""

    def __init__(self) -> None:
        self._values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self._values.append(value)

    def finalize(self) -> float | None:
        if not self._values:
            return None
        ordered = sorted(self._values)
        mid = len(ordered) // 2
        if len(ordered) % 2:
            return float(ordered[mid])
        return (ordered[mid - 1] + ordered[mid]) / 2.0


def register_sqlite_functions(dbapi_connection: Any) -> None:
    """Make ``mp_median`` available on a raw ``sqlite3`` connection (idempotent)."""
    dbapi_connection.create_aggregate(_MEDIAN_FUNCTION, 1, SqliteMedian)
