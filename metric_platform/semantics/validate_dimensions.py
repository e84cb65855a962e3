"""Validating the dimension model: conformed dimensions, time dimensions, joins and the FD-DAG."""

from __future__ import annotations

from metric_platform.semantics.fd_dag import FDDag, FDEdge
from metric_platform.semantics.frozen import FrozenMap
from metric_platform.semantics.issues import IssueCollector
from metric_platform.semantics.models import ACModel
from metric_platform.semantics.spec import DimensionSpec, JoinSpec, SchemaSpec
from metric_platform.semantics.types import TimeGrain

TIME_BLOCK = "time"


def dimensions(
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
        block = TIME_BLOCK if grain is not None else (d.block or d.name)
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


def joins(
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


def fd_dag(model: ACModel, dims: dict[str, DimensionSpec], issues: IssueCollector) -> FDDag:
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
