"""The Polars backend: lazy scans of one Parquet file (or directory of files) per schema.

Each read checks the Parquet footer against the AC (every declared column present, of a castable
kind) so a bad source fails at the call with a :class:`SourceError` naming the schema, the file and
how to fix it, rather than later inside ``collect``; that includes the one cast a footer can
show to fail (unsigned 64-bit integers above Int64's range, from the column statistics). Reads are
not cached: the engine calls a backend only on a miss, and a file rewritten in between must be seen.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from metric_platform.backends.identity import files_stamp
from metric_platform.backends.normalize import POLARS_DTYPES
from metric_platform.backends.parquet_stats import check_int64_range
from metric_platform.backends.plan import ROOT_ALIAS, AggregatePlan, plan_aggregate, typed_filters
from metric_platform.backends.polars_expressions import as_day, bucket_expr, filter_expr, literal
from metric_platform.backends.polars_reduction import reduction
from metric_platform.backends.protocol import AggregateRequest
from metric_platform.errors import SourceError
from metric_platform.semantics.spec import AnalyticalContext, SchemaSpec
from metric_platform.semantics.types import ColumnType

_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
# Which Parquet dtypes cast to each declared type without inventing values (pl.Null: an all-null
# column written without a type).
_COMPATIBLE: dict[ColumnType, tuple[type[pl.DataType], ...]] = {
    ColumnType.INTEGER: (*_INTEGERS, pl.Null),
    ColumnType.FLOAT: (pl.Float32, pl.Float64, pl.Decimal, *_INTEGERS, pl.Null),
    ColumnType.STRING: (pl.String, pl.Categorical, pl.Enum, pl.Null),
    ColumnType.BOOLEAN: (pl.Boolean, pl.Null),
    ColumnType.DATE: (pl.Date, pl.Datetime, pl.Null),
    ColumnType.TIMESTAMP: (pl.Datetime, pl.Date, pl.Null),
}


class PolarsBackend:
    """``DataAPIBackend`` over Parquet; ``root`` overrides the AC's source directory."""

    def __init__(self, ac: AnalyticalContext, root: Path | None = None) -> None:
        directory = root if root is not None else ac.source.path
        if directory is None:
            msg = f"AC {ac.name!r} has no source path; set source.path to the directory of its Parquet files"
            raise SourceError(msg)
        self._ac = ac
        self._root = Path(directory)

    @property
    def ac(self) -> AnalyticalContext:
        return self._ac

    @property
    def name(self) -> str:
        return "polars"

    def close(self) -> None:
        """Nothing to release: scans hold no open files between calls."""

    def source_identity(self) -> str:
        """``parquet:<resolved root directory>``."""
        return f"parquet:{self._root.resolve()}"

    def table_stamp(self, schema: str) -> str:
        """Size and mtime (ns) of the schema's Parquet file, or of every file of its directory."""
        path = self._source(self._ac.schema(schema))
        try:
            return files_stamp(path)
        except OSError as exc:
            msg = f"cannot stat the Parquet source of schema {schema!r} at {path}: {exc}; check the path"
            raise SourceError(msg) from exc

    def extract_to_lazyframe(self, schema: str) -> pl.LazyFrame:
        spec = self._ac.schema(schema)
        return self._read(spec, tuple(spec.columns))

    def aggregate(self, request: AggregateRequest) -> pl.LazyFrame:
        plan = plan_aggregate(self._ac, request)
        frame = self._joined(plan)
        if plan.window is not None:
            frame = frame.filter(_in_window(plan))
        keys = []
        for anchor in plan.anchor:
            column = pl.col(_name(anchor.ref.alias, anchor.ref.column))
            if anchor.time_grain is not None:
                column = bucket_expr(column, anchor.ref.column_type, anchor.time_grain)
            keys.append(column.alias(anchor.dimension))
        x = pl.col(_name(plan.value.alias, plan.value.column))
        impute = None if plan.impute_value is None else literal(plan.impute_value, plan.value.column_type)
        reducer = reduction(
            plan.operator,
            plan.treatment,
            x,
            name=plan.value_name,
            impute=impute,
            with_counts=plan.with_counts,
        )
        if reducer.prepare:
            frame = frame.with_columns(reducer.prepare)
        # No anchor: one row over everything (also over zero rows), like SQL without GROUP BY.
        out = frame.group_by(keys).agg(reducer.aggregates) if keys else frame.select(reducer.aggregates)
        out = out.select(*(pl.col(a.dimension) for a in plan.anchor), *reducer.outputs)
        return out.select(pl.col(name).cast(dtype) for name, dtype in plan.output_schema.items())

    # -- reading ----------------------------------------------------------------------------------
    def _joined(self, plan: AggregatePlan) -> pl.LazyFrame:
        """The root's rows LEFT joined along the plan, columns named ``alias.column``."""
        frame = self._aliased(plan.root, ROOT_ALIAS, plan)
        for step in plan.joins:
            right = self._aliased(step.schema, step.alias, plan)
            frame = frame.join(
                right,
                left_on=_name(step.parent, step.left_key),
                right_on=_name(step.alias, step.right_key),
                how="left",
                coalesce=False,  # keep the right key: it is NULL for an unmatched row, as in SQL
            )
        return frame

    def _aliased(self, schema: str, alias: str, plan: AggregatePlan) -> pl.LazyFrame:
        columns = plan.columns_of(alias)
        frame = self._read(self._ac.schema(schema), columns)
        return frame.select(pl.col(c).alias(_name(alias, c)) for c in columns)

    def _read(self, spec: SchemaSpec, columns: tuple[str, ...]) -> pl.LazyFrame:
        """``columns`` of ``spec`` (logical names, declared dtypes) with the AC filter applied."""
        path = self._source(spec)
        try:
            scan = pl.scan_parquet(path)
            available = scan.collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            msg = (
                f"cannot read Parquet for schema {spec.name!r} at {path}: {detail}; "
                "regenerate or replace the file (metric-platform generate-sample for the sample)"
            )
            raise SourceError(msg) from exc
        # Every declared column, not only the ones read: the SQL backend checks the same, so a
        # broken source fails alike on every backend and for every request.
        for column in spec.columns:
            _check_column(spec, column, available, path)
            unsigned = available[spec.physical(column)] == pl.UInt64
            if unsigned and spec.column_type(column) is ColumnType.INTEGER:
                check_int64_range(path, spec, column)
        filters = typed_filters(self._ac, spec.name)
        needed = dict.fromkeys([*columns, *(c.column for c in filters)])
        typed = scan.select(
            pl.col(spec.physical(c)).cast(POLARS_DTYPES[spec.column_type(c)]).alias(c) for c in needed
        )
        for cond in filters:
            typed = typed.filter(filter_expr(cond, pl.col(cond.column), spec.column_type(cond.column)))
        return typed.select(columns)

    def _source(self, spec: SchemaSpec) -> Path:
        file = self._root / f"{spec.table}.parquet"
        if file.is_file():
            return file
        directory = self._root / spec.table
        if directory.is_dir():
            return directory
        msg = (
            f"schema {spec.name!r}: no Parquet source for table {spec.table!r} (looked for {file} and "
            f"the directory {directory}); write the table there or fix source.path in AC {self._ac.name!r}"
        )
        raise SourceError(msg)


def _check_column(spec: SchemaSpec, column: str, available: pl.Schema, path: Path) -> None:
    physical = spec.physical(column)
    declared = spec.column_type(column)
    if physical not in available:
        renamed = f" (physical name {physical!r})" if physical != column else ""
        msg = (
            f"schema {spec.name!r}: column {column!r}{renamed} is declared in the AC but missing from "
            f"{path} (it has: {', '.join(available)}); add it to the data or fix the AC's columns/name_map"
        )
        raise SourceError(msg)
    if not isinstance(available[physical], _COMPATIBLE[declared]):
        msg = (
            f"schema {spec.name!r}: column {column!r} is declared {declared} but {path} stores it as "
            f"{available[physical]}; fix the declared type in the AC or the data"
        )
        raise SourceError(msg)


def _in_window(plan: AggregatePlan) -> pl.Expr:
    assert plan.window is not None and plan.window_column is not None  # planned together
    ref = plan.window_column
    day = as_day(pl.col(_name(ref.alias, ref.column)), ref.column_type)
    return day.is_between(pl.lit(plan.window.start), pl.lit(plan.window.end))


def _name(alias: str, column: str) -> str:
    return f"{alias}.{column}"
