"""Turning an ``ACModel`` into a frozen ``AnalyticalContext``, checking every cross-reference.

Every problem is reported with the file, the YAML path and a fix hint; validation collects all of
them before raising one ``ConfigError``. Families are checked in ``validate_families``.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

from metric_platform.semantics.fd_dag import FDDag, FDEdge
from metric_platform.semantics.frozen import FrozenMap
from metric_platform.semantics.issues import IDENTIFIER, IssueCollector
from metric_platform.semantics.literals import coerce_literal
from metric_platform.semantics.models import ACModel, FilterModel, SourceModel
from metric_platform.semantics.spec import (
    AnalyticalContext,
    DimensionSpec,
    FilterCondition,
    FilterOp,
    JoinSpec,
    PartitionsSpec,
    ProvisionalPolicy,
    SchemaSpec,
    SourceKind,
    SourceSpec,
    StabilityPolicy,
)
from metric_platform.semantics.types import ColumnType, TimeGrain, VerificationLevel
from metric_platform.semantics.validate_families import build_families

_TIME_BLOCK = "time"


def build_ac(model: ACModel, *, file: Path, source_root: Path | None = None) -> AnalyticalContext:
    issues = IssueCollector(str(file))
    issues.identifier("name", model.name, "AC name")
    try:
        project_id = uuid.UUID(model.project_id)
    except ValueError:
        issues.add("project_id", f"{model.project_id!r} is not a UUID", "write it as 8-4-4-4-12 hex digits")
        project_id = uuid.UUID(int=0)
    if not model.tenant_id.strip():
        issues.add("tenant_id", "tenant_id is empty", "set the tenant this AC belongs to")
    partitions = _partitions(model, issues)
    source = _source(model.source, issues, base=source_root or file.parent)
    schemas = _schemas(model, issues)
    dimensions = _dimensions(model, schemas, issues)
    joins = _joins(model, schemas, dimensions, issues)
    fd_dag = _fd_dag(model, dimensions, issues)
    conditions = tuple(
        c
        for i, f in enumerate(model.filter)
        if (c := _filter(f, f"filter[{i}]", schemas, issues)) is not None
    )
    stability = _stability(model, schemas, issues)
    # Families need consistent schemas and dimensions: report the structural problems first.
    issues.raise_if_any()
    ac = AnalyticalContext(
        name=model.name,
        tenant_id=model.tenant_id,
        project_id=project_id,
        partitions=partitions,
        source=source,
        schemas=FrozenMap(schemas),
        dimensions=FrozenMap(dimensions),
        joins=joins,
        fd_dag=fd_dag,
        filter=conditions,
        stability=stability,
        families={},
        file=file,
    )
    families = build_families(model.metric_families, ac, issues)
    issues.raise_if_any()
    # Read-only views: a frozen spec whose mappings could still be edited would not be frozen.
    return dataclasses.replace(ac, families=FrozenMap(families))


def _partitions(model: ACModel, issues: IssueCollector) -> PartitionsSpec:
    p = model.partitions
    if p.end_date is not None and p.end_date < p.start_date:
        issues.add("partitions.end_date", "end_date is before start_date", "swap them or drop end_date")
    return PartitionsSpec(p.start_date, p.end_date)


def _source(src: SourceModel, issues: IssueCollector, *, base: Path) -> SourceSpec:
    kinds = [k.value for k in SourceKind]
    if src.kind not in kinds:
        issues.add("source.kind", f"unknown source kind {src.kind!r}", f"use one of: {', '.join(kinds)}")
        return SourceSpec(SourceKind.PARQUET, path=base)
    kind = SourceKind(src.kind)
    if src.url is not None:
        issues.add(
            "source.url",
            "a connection URL is written inline; it would put a secret in the AC file",
            "put the URL in an environment variable and name it with `url_env: VARIABLE`",
        )
    if kind is SourceKind.POSTGRES:
        if not src.url_env:
            issues.add(
                "source.url_env", "a postgres source needs url_env", "name the variable holding the URL"
            )
        elif not IDENTIFIER.match(src.url_env):
            looks_like = "a URL" if "://" in src.url_env or "@" in src.url_env else "not a variable name"
            issues.add(
                "source.url_env",
                f"url_env is {looks_like}; it names the environment variable that holds the URL",
                "put the URL in an environment variable (RETAIL_PG_URL=postgresql://...) "
                "and write url_env: RETAIL_PG_URL",
            )
        return SourceSpec(kind, url_env=src.url_env)
    if not src.path:
        what = "directory of Parquet files" if kind is SourceKind.PARQUET else "SQLite file"
        issues.add(
            "source.path", f"a {kind} source needs a path", f"give the {what}, relative to the AC file"
        )
        return SourceSpec(kind, path=base)
    return SourceSpec(kind, path=(base / src.path).resolve())


def _schemas(model: ACModel, issues: IssueCollector) -> dict[str, SchemaSpec]:
    schemas: dict[str, SchemaSpec] = {}
    types = [t.value for t in ColumnType]
    levels = [v.value for v in VerificationLevel]
    for i, s in enumerate(model.schemas):
        path = f"schemas[{i}]"
        issues.identifier(f"{path}.name", s.name, "schema name")
        if s.name in schemas:
            issues.add(f"{path}.name", f"duplicate schema name {s.name!r}", "give every schema its own name")
            continue
        # Table names become file names under the source directory (Parquet): no path tricks.
        issues.identifier(f"{path}.table", s.table, "table name")
        if s.db_schema is not None:
            issues.identifier(f"{path}.db_schema", s.db_schema, "db_schema")
        columns: dict[str, ColumnType] = {}
        for col, typ in s.columns.items():
            issues.identifier(f"{path}.columns.{col}", col, "column name")
            if typ not in types:
                issues.add(
                    f"{path}.columns.{col}", f"unknown column type {typ!r}", f"use one of: {', '.join(types)}"
                )
                continue
            columns[col] = ColumnType(typ)
        if not s.columns:
            issues.add(
                f"{path}.columns", "a schema needs at least one column", "declare its columns and types"
            )
        level = VerificationLevel.A
        if s.verification_level in levels:
            level = VerificationLevel(s.verification_level)
        else:
            issues.add(
                f"{path}.verification_level", f"unknown level {s.verification_level!r}", "use A, AA or AAA"
            )
        raw_map = model.name_map.get(s.name, {})
        for logical in raw_map:
            if logical not in s.columns:
                issues.unknown(
                    f"name_map.{s.name}.{logical}", "column", logical, s.columns, "map a declared column"
                )
        schemas[s.name] = SchemaSpec(
            s.name, s.table, FrozenMap(columns), level, s.db_schema, FrozenMap(dict(raw_map))
        )
    for name in model.name_map:
        if name not in schemas:
            issues.unknown(f"name_map.{name}", "schema", name, schemas, "key name_map by schema name")
    return schemas


def _dimensions(
    model: ACModel, schemas: dict[str, SchemaSpec], issues: IssueCollector
) -> dict[str, DimensionSpec]:
    dims: dict[str, DimensionSpec] = {}
    grains = [g.value for g in TimeGrain]
    for i, d in enumerate(model.dimensions):
        path = f"dimensions[{i}]"
        issues.identifier(f"{path}.name", d.name, "dimension name")
        if d.name in dims:
            issues.add(
                f"{path}.name", f"duplicate dimension name {d.name!r}", "give every dimension its own name"
            )
            continue
        grain: TimeGrain | None = None
        if d.time_grain is not None:
            if d.time_grain not in grains:
                issues.add(
                    f"{path}.time_grain",
                    f"unknown time grain {d.time_grain!r}",
                    f"use one of: {', '.join(grains)}",
                )
            else:
                grain = TimeGrain(d.time_grain)
        for schema, col in d.columns.items():
            if schema not in schemas:
                issues.unknown(
                    f"{path}.columns.{schema}",
                    "schema",
                    schema,
                    schemas,
                    "bind the dimension to a declared schema",
                )
            elif col not in schemas[schema].columns:
                issues.unknown(
                    f"{path}.columns.{schema}",
                    "column",
                    col,
                    schemas[schema].columns,
                    f"use a column of {schema!r}",
                )
            elif grain is not None and not schemas[schema].columns[col].is_temporal:
                issues.add(
                    f"{path}.columns.{schema}",
                    f"time dimension bound to non-date column {col!r}",
                    "bind it to a date or timestamp column",
                )
        col_types = {
            schemas[s].columns[c] for s, c in d.columns.items() if s in schemas and c in schemas[s].columns
        }
        if grain is None and len(col_types) > 1:
            issues.add(
                f"{path}.columns",
                f"dimension {d.name!r} is bound to columns of different types",
                "bind it to columns of one type",
            )
        if d.derived_from is not None and d.columns:
            issues.add(
                f"{path}",
                "a dimension is either bound to columns or derived_from another, not both",
                "drop one",
            )
        if d.derived_from is None and not d.columns:
            issues.add(
                f"{path}.columns",
                f"dimension {d.name!r} is bound to no column",
                "add `columns: {schema: column}` or `derived_from`",
            )
        if d.derived_from is not None and grain is None:
            issues.add(
                f"{path}.time_grain",
                "only time dimensions can be derived",
                "set time_grain (week, month, quarter, year)",
            )
        if grain is not None and d.derived_from is None and grain is not TimeGrain.DAY:
            issues.add(
                f"{path}.time_grain",
                f"a {grain} dimension bound to a column",
                "bind a day dimension to the date column and derive this one from it",
            )
        block = _TIME_BLOCK if grain is not None else (d.block or d.name)
        dims[d.name] = DimensionSpec(d.name, FrozenMap(dict(d.columns)), grain, d.derived_from, block)
    day_dims = [d.name for d in dims.values() if d.time_grain is TimeGrain.DAY and d.derived_from is None]
    if len(day_dims) > 1:
        issues.add(
            "dimensions",
            f"several day dimensions bound to columns: {', '.join(day_dims)}",
            "keep one and bind it to the date column of every schema",
        )
    for i, d in enumerate(model.dimensions):
        if d.derived_from is None:
            continue
        base = dims.get(d.derived_from)
        if base is None:
            issues.unknown(
                f"dimensions[{i}].derived_from",
                "dimension",
                d.derived_from,
                dims,
                "derive from the day dimension",
            )
        elif base.time_grain is not TimeGrain.DAY or base.derived_from is not None:
            issues.add(
                f"dimensions[{i}].derived_from",
                f"{d.derived_from!r} is not the day dimension",
                "derive time dimensions from the day dimension",
            )
    return dims


def _joins(
    model: ACModel, schemas: dict[str, SchemaSpec], dims: dict[str, DimensionSpec], issues: IssueCollector
) -> tuple[JoinSpec, ...]:
    joins = []
    for i, j in enumerate(model.joins):
        path = f"joins[{i}]"
        ok = True
        for key, name in (("from", j.from_), ("to", j.to)):
            if name not in schemas:
                issues.unknown(f"{path}.{key}", "schema", name, schemas, "join declared schemas")
                ok = False
        if j.on not in dims:
            issues.unknown(f"{path}.on", "dimension", j.on, dims, "join on a dimension bound in both schemas")
            ok = False
        if not ok:
            continue
        if j.from_ == j.to:
            issues.add(path, f"schema {j.from_!r} joined to itself", "join two different schemas")
            continue
        for name in (j.from_, j.to):
            if name not in dims[j.on].columns:
                issues.add(
                    f"{path}.on",
                    f"dimension {j.on!r} is not bound to a column of {name!r}",
                    f"add `{name}: <column>` to its columns",
                )
                ok = False
        if ok:
            joins.append(JoinSpec(j.from_, j.to, j.on))
    return tuple(joins)


def _fd_dag(model: ACModel, dims: dict[str, DimensionSpec], issues: IssueCollector) -> FDDag:
    edges: list[FDEdge] = []
    for i, (finer, coarser) in enumerate(model.fd_edges):
        path = f"fd_edges[{i}]"
        if finer not in dims or coarser not in dims:
            for name in (finer, coarser):
                if name not in dims:
                    issues.unknown(path, "dimension", name, dims, "edges join declared dimensions")
            continue
        if finer == coarser:
            issues.add(path, f"edge from {finer!r} to itself", "remove it")
            continue
        f, c = dims[finer], dims[coarser]
        if (f.time_grain is None) != (c.time_grain is None):
            issues.add(
                path,
                f"edge {finer} -> {coarser} mixes a time and a non-time dimension",
                "time dimensions only determine time dimensions",
            )
            continue
        if (
            f.time_grain is not None
            and c.time_grain is not None
            and not f.time_grain.rolls_up_to(c.time_grain)
        ):
            issues.add(
                path,
                f"{f.time_grain} does not determine {c.time_grain}: "
                f"a {f.time_grain} can straddle two {c.time_grain}s",
                "remove the edge (roll weeks up from days instead)",
            )
            continue
        edges.append(FDEdge(finer, coarser))
    dag = FDDag(tuple(edges))
    cycle = dag.find_cycle()
    if cycle is not None:
        issues.add(
            "fd_edges",
            f"the FD-DAG has a cycle: {' -> '.join(cycle)}",
            "an FD edge goes from finer to coarser; remove one edge of the cycle",
        )
    return dag


def _filter(
    f: FilterModel, path: str, schemas: dict[str, SchemaSpec], issues: IssueCollector
) -> FilterCondition | None:
    ops = [o.value for o in FilterOp]
    if f.schema_ not in schemas:
        issues.unknown(f"{path}.schema", "schema", f.schema_, schemas, "filter a declared schema")
        return None
    schema = schemas[f.schema_]
    if f.column not in schema.columns:
        issues.unknown(f"{path}.column", "column", f.column, schema.columns, f"use a column of {f.schema_!r}")
        return None
    if f.op not in ops:
        issues.add(f"{path}.op", f"unknown filter op {f.op!r}", f"use one of: {', '.join(ops)}")
        return None
    op = FilterOp(f.op)
    col_type = schema.columns[f.column]
    if op in (FilterOp.IS_NULL, FilterOp.NOT_NULL):
        if f.value is not None:
            issues.add(f"{path}.value", f"{op} takes no value", "remove value")
        return FilterCondition(f.schema_, f.column, op)
    if op in (FilterOp.IN, FilterOp.NOT_IN):
        if not isinstance(f.value, list) or not f.value:
            issues.add(f"{path}.value", f"{op} needs a non-empty list", "write value: [a, b]")
            return None
        values = tuple(
            coerce_literal(v, col_type, f"{path}.value[{k}]", issues) for k, v in enumerate(f.value)
        )
        if any(v is None for v in values):
            return None
        return FilterCondition(f.schema_, f.column, op, tuple(v for v in values if v is not None))
    value = coerce_literal(f.value, col_type, f"{path}.value", issues)
    return None if value is None else FilterCondition(f.schema_, f.column, op, value)


def _stability(
    model: ACModel, schemas: dict[str, SchemaSpec], issues: IssueCollector
) -> StabilityPolicy | None:
    s = model.stability
    if s is None:
        return None
    ref = s.timestamp
    policies = [p.value for p in ProvisionalPolicy]
    if s.provisional not in policies:
        issues.add(
            "stability.provisional", f"unknown policy {s.provisional!r}", f"use one of: {', '.join(policies)}"
        )
    if ref.schema_ not in schemas:
        issues.unknown(
            "stability.timestamp.schema",
            "schema",
            ref.schema_,
            schemas,
            "name the schema with the update timestamp",
        )
        return None
    cols = schemas[ref.schema_].columns
    if ref.column not in cols:
        issues.unknown(
            "stability.timestamp.column", "column", ref.column, cols, "name the update-timestamp column"
        )
        return None
    if not cols[ref.column].is_temporal:
        issues.add(
            "stability.timestamp.column",
            f"{ref.column!r} is a {cols[ref.column]} column",
            "use a timestamp or date column",
        )
    policy = ProvisionalPolicy(s.provisional) if s.provisional in policies else ProvisionalPolicy.SERVE
    return StabilityPolicy(s.hold_off_days, ref.schema_, ref.column, policy)
