"""Turning an ``ACModel`` into a frozen ``AnalyticalContext``, checking every cross-reference.

Every problem is reported with the file, the YAML path and a fix hint; validation collects all of
them before raising one ``ConfigError``. Families are checked in ``validate_families``.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

from metric_platform.semantics import validate_dimensions
from metric_platform.semantics.frozen import FrozenMap
from metric_platform.semantics.issues import IDENTIFIER, IssueCollector
from metric_platform.semantics.literals import coerce_literal
from metric_platform.semantics.models import ACModel, FilterModel, SourceModel
from metric_platform.semantics.spec import (
    AnalyticalContext,
    FilterCondition,
    FilterOp,
    PartitionsSpec,
    ProvisionalPolicy,
    SchemaSpec,
    SourceKind,
    SourceSpec,
    StabilityPolicy,
)
from metric_platform.semantics.types import ColumnType, VerificationLevel
from metric_platform.semantics.validate_families import build_families


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
    dimensions = validate_dimensions.dimensions(model, schemas, issues)
    joins = validate_dimensions.joins(model, schemas, dimensions, issues)
    fd_dag = validate_dimensions.fd_dag(model, dimensions, issues)
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
        elif not IDENTIFIER.fullmatch(src.url_env):
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
        physical: dict[str, str] = {}
        for logical in s.columns:
            name = raw_map.get(logical, logical)
            if name in physical:
                issues.add(
                    f"name_map.{s.name}.{logical}",
                    f"columns {physical[name]!r} and {logical!r} both read the physical column {name!r}",
                    "map each declared column to its own physical column",
                )
            physical[name] = logical
        schemas[s.name] = SchemaSpec(
            s.name, s.table, FrozenMap(columns), level, s.db_schema, FrozenMap(dict(raw_map))
        )
    for name in model.name_map:
        if name not in schemas:
            issues.unknown(f"name_map.{name}", "schema", name, schemas, "key name_map by schema name")
    return schemas


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
