"""The backend-neutral plan of one aggregate request, so every backend reads the same columns.

``plan_aggregate`` resolves what a request means against the AC once: which tables are LEFT
joined (one alias per distinct join path, shared by every dimension reached through it), which
column each anchor dimension and the value come from, where the window applies and the literals
(filter and impute values) coerced to their columns' types. A backend only translates the plan
into its own dialect, so semantic errors (no day dimension for a window, an operator that does not
accept the column) are raised here, identically for every backend.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace

import polars as pl

from metric_platform.backends.normalize import result_schema
from metric_platform.backends.protocol import AggregateRequest, DateWindow
from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.spec import (
    AnalyticalContext,
    FilterCondition,
    FilterValue,
    JoinSpec,
)
from metric_platform.semantics.types import ColumnType, MissingValueKind, TimeGrain

ROOT_ALIAS = "t0"


@dataclass(frozen=True)
class ColumnRef:
    """A logical column of the schema read under ``alias``."""

    alias: str
    schema: str
    column: str
    column_type: ColumnType


# (schema, logical column, join path) -> the column read under that path's alias
_RefFactory = Callable[[str, str, tuple[JoinSpec, ...]], ColumnRef]


@dataclass(frozen=True)
class JoinStep:
    """LEFT JOIN ``schema`` as ``alias`` ON ``parent.left_key = alias.right_key`` (logical names)."""

    alias: str
    parent: str
    schema: str
    left_key: str
    right_key: str


@dataclass(frozen=True)
class AnchorColumn:
    dimension: str
    ref: ColumnRef
    time_grain: TimeGrain | None


@dataclass(frozen=True)
class AggregatePlan:
    root: str
    joins: tuple[JoinStep, ...]  # parents before children
    anchor: tuple[AnchorColumn, ...]
    value: ColumnRef
    value_name: str
    operator: Operator
    treatment: MissingValueKind
    impute_value: FilterValue | None
    window: DateWindow | None
    window_column: ColumnRef | None
    with_counts: bool  # add COUNT(*) and COUNT(value) after the value (normalize.COUNT_COLUMNS)
    output_schema: pl.Schema

    def columns_of(self, alias: str) -> tuple[str, ...]:
        """The logical columns read from ``alias``, in a stable order without duplicates."""
        refs = [a.ref for a in self.anchor] + [self.value]
        if self.window_column is not None:
            refs.append(self.window_column)
        names = [r.column for r in refs if r.alias == alias]
        names += [j.left_key for j in self.joins if j.parent == alias]
        names += [j.right_key for j in self.joins if j.alias == alias]
        return tuple(dict.fromkeys(names))


def plan_aggregate(ac: AnalyticalContext, request: AggregateRequest) -> AggregatePlan:
    family = request.family
    root = family.root_schema
    value_type = ac.schema(root).column_type(family.root_column)
    if not family.operator.info.accepts_type(value_type):
        msg = (
            f"metric family {family.name!r}: {family.operator} does not accept the {value_type} column "
            f"{root}.{family.root_column}; pick an operator for that type or another column"
        )
        raise InvalidRequestError(msg)
    if len(set(request.anchor)) != len(request.anchor):
        msg = f"anchor {request.anchor} names a dimension twice; list each dimension once"
        raise InvalidRequestError(msg)
    aliases: dict[tuple[JoinSpec, ...], str] = {(): ROOT_ALIAS}
    joins: list[JoinStep] = []

    def alias_for(path: tuple[JoinSpec, ...]) -> str:
        if path not in aliases:
            parent = alias_for(path[:-1])
            join = path[-1]
            on = ac.dimension(join.on)
            aliases[path] = f"j{len(aliases)}"
            left_key, right_key = on.columns[join.from_schema], on.columns[join.to_schema]
            joins.append(JoinStep(aliases[path], parent, join.to_schema, left_key, right_key))
        return aliases[path]

    def ref(schema: str, column: str, path: tuple[JoinSpec, ...]) -> ColumnRef:
        return ColumnRef(alias_for(path), schema, column, ac.schema(schema).column_type(column))

    anchor = []
    for binding in ac.bindings(root, request.anchor):
        column = ref(binding.schema, binding.column, binding.join_path)
        if binding.time_grain is not None:
            _require_temporal(column, binding.dimension)
        anchor.append(AnchorColumn(binding.dimension, column, binding.time_grain))
    window_column = None
    if request.window is not None:
        window_column = _window_column(ac, root, ref)
    treatment = request.treatment
    impute_value = None
    if treatment.kind is MissingValueKind.IMPUTE:
        assert treatment.value is not None  # MissingValueTreatment guarantees it
        impute_value = coerce_literal(treatment.value, value_type, f"impute value of {family.name!r}")
    return AggregatePlan(
        root=root,
        joins=tuple(joins),
        anchor=tuple(anchor),
        value=ColumnRef(ROOT_ALIAS, root, family.root_column, value_type),
        value_name=family.name,
        operator=family.operator,
        treatment=treatment.kind,
        impute_value=impute_value,
        window=request.window,
        window_column=window_column,
        with_counts=request.with_counts,
        output_schema=result_schema(ac, family, request.anchor, with_counts=request.with_counts),
    )


def _window_column(ac: AnalyticalContext, root: str, ref: _RefFactory) -> ColumnRef:
    day = ac.day_dimension
    binding = ac.binding(root, day) if day is not None else None
    if day is None or binding is None:
        where = "the AC has no day dimension" if day is None else f"day dimension {day!r} is not reachable"
        msg = (
            f"a time window needs a day dimension on the rows of schema {root!r}, but {where}; "
            "drop the window or bind a day dimension to a date column of that schema"
        )
        raise InvalidRequestError(msg)
    column = ref(binding.schema, binding.column, binding.join_path)
    _require_temporal(column, day)
    return column


def _require_temporal(column: ColumnRef, dimension: str) -> None:
    if not column.column_type.is_temporal:
        msg = (
            f"time dimension {dimension!r} is bound to {column.schema}.{column.column}, a "
            f"{column.column_type} column; bind it to a date or timestamp column"
        )
        raise InvalidRequestError(msg)


def typed_filters(ac: AnalyticalContext, schema: str) -> tuple[FilterCondition, ...]:
    """The AC filter conditions on ``schema`` with their values coerced to the columns' types."""
    spec = ac.schema(schema)
    out = []
    for cond in ac.filters_for(schema):
        column_type = spec.column_type(cond.column)
        what = f"filter value for {schema}.{cond.column}"
        value = cond.value
        if isinstance(value, tuple):
            value = tuple(coerce_literal(v, column_type, what) for v in value)
        elif value is not None:
            value = coerce_literal(value, column_type, what)
        out.append(replace(cond, value=value))
    return tuple(out)


def coerce_literal(value: FilterValue, column_type: ColumnType, what: str) -> FilterValue:
    """``value`` as the Python type of a ``column_type`` column, so every backend compares alike."""
    coerced: FilterValue | None = None
    match column_type:
        case ColumnType.INTEGER:
            if isinstance(value, int) and not isinstance(value, bool):
                coerced = value
            elif isinstance(value, float) and value.is_integer():
                coerced = int(value)
        case ColumnType.FLOAT:
            if isinstance(value, int | float) and not isinstance(value, bool):
                coerced = float(value)
        case ColumnType.STRING:
            coerced = value if isinstance(value, str) else None
        case ColumnType.BOOLEAN:
            coerced = value if isinstance(value, bool) else None
        case ColumnType.DATE:
            coerced = _as_date(value)
        case ColumnType.TIMESTAMP:
            coerced = _as_datetime(value)
    if coerced is None:
        msg = f"{what}: {value!r} is not a valid {column_type} value; write it as a {column_type}"
        raise InvalidRequestError(msg)
    return coerced


def _as_date(value: FilterValue) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return None
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _as_datetime(value: FilterValue) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return None
