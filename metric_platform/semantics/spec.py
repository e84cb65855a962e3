"""Frozen specs of a validated analytical context (AC).

These are what the rest of the platform consumes; they are built only by
``semantics.validate`` from the YAML models, so every spec here is known to be consistent.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from metric_platform.errors import UnknownNameError, did_you_mean
from metric_platform.semantics.fd_dag import FDDag
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.types import (
    ColumnType,
    MissingValueTreatment,
    TimeGrain,
    VerificationLevel,
)

Grain = tuple[str, ...]
_T = TypeVar("_T")


class SourceKind(StrEnum):
    PARQUET = "parquet"
    SQLITE = "sqlite"
    POSTGRES = "postgres"


@dataclass(frozen=True)
class SourceSpec:
    """Where the AC's tables live. ``path`` for Parquet (a directory) and SQLite (a file);
    ``url_env`` names the environment variable holding a PostgreSQL URL (never inline)."""

    kind: SourceKind
    path: Path | None = None
    url_env: str | None = None

    @property
    def identity(self) -> str:
        """What identifies the data (for fingerprints): the location, never a secret's value."""
        return f"{self.kind}:{self.path if self.path is not None else 'env:' + str(self.url_env)}"


@dataclass(frozen=True)
class SchemaSpec:
    name: str
    table: str
    columns: Mapping[str, ColumnType]
    verification_level: VerificationLevel = VerificationLevel.A
    db_schema: str | None = None  # SQL namespace (PostgreSQL schema) of the table
    name_map: Mapping[str, str] = field(default_factory=dict)  # logical column -> physical column

    def physical(self, column: str) -> str:
        return self.name_map.get(column, column)

    def column_type(self, column: str) -> ColumnType:
        try:
            return self.columns[column]
        except KeyError:
            hint = did_you_mean(column, self.columns)
            msg = f"schema {self.name!r} has no column {column!r}{hint} (columns: {', '.join(self.columns)})"
            raise UnknownNameError(msg) from None


@dataclass(frozen=True)
class DimensionSpec:
    """A dimension bound to a column in one or more schemas (a conformed dimension), or a time
    dimension derived from a day dimension by truncating to ``time_grain``."""

    name: str
    columns: Mapping[str, str] = field(default_factory=dict)  # schema -> logical column
    time_grain: TimeGrain | None = None
    derived_from: str | None = None
    block: str = ""  # the A-block it belongs to (``time`` for time dimensions)

    @property
    def is_time(self) -> bool:
        return self.time_grain is not None


@dataclass(frozen=True)
class JoinSpec:
    """A many-to-one join from ``from_schema`` to ``to_schema`` on the conformed dimension ``on``."""

    from_schema: str
    to_schema: str
    on: str


class FilterOp(StrEnum):
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    IN = "in"
    NOT_IN = "not_in"
    IS_NULL = "is_null"
    NOT_NULL = "not_null"


FilterValue = int | float | str | bool | dt.date | dt.datetime


@dataclass(frozen=True)
class FilterCondition:
    """Applied to the rows of ``schema`` wherever that schema is read (seed 003 §2.1: every entry is
    pre-scoped to the AC's filter)."""

    schema: str
    column: str
    op: FilterOp
    value: FilterValue | tuple[FilterValue, ...] | None = None


class ProvisionalPolicy(StrEnum):
    SERVE = "serve"  # days inside the hold-off window are served, flagged provisional
    EXCLUDE = "exclude"  # only stable days are served (seed 003's strict reading)


@dataclass(frozen=True)
class StabilityPolicy:
    hold_off_days: int
    timestamp_schema: str
    timestamp_column: str
    provisional: ProvisionalPolicy = ProvisionalPolicy.SERVE


@dataclass(frozen=True)
class IpReducer:
    operator: Operator
    a_block: tuple[str, ...]


@dataclass(frozen=True)
class MetricFamily:
    name: str
    root_schema: str
    root_column: str
    reducer: IpReducer
    mvt: MissingValueTreatment
    base_grain: Grain
    cache_grains: tuple[Grain, ...]
    fingerprint: str = ""

    @property
    def operator(self) -> Operator:
        return self.reducer.operator


@dataclass(frozen=True)
class PartitionsSpec:
    start_date: dt.date
    end_date: dt.date | None = None


@dataclass(frozen=True)
class DimensionBinding:
    """How a dimension is read for rows of a root schema: the column of ``schema`` reached through
    ``join_path`` (empty when it lives on the root), truncated to ``time_grain`` for time dims."""

    dimension: str
    schema: str
    column: str
    join_path: tuple[JoinSpec, ...]
    time_grain: TimeGrain | None


@dataclass(frozen=True)
class AnalyticalContext:
    name: str
    tenant_id: str
    project_id: uuid.UUID
    partitions: PartitionsSpec
    source: SourceSpec
    schemas: Mapping[str, SchemaSpec]
    dimensions: Mapping[str, DimensionSpec]
    joins: tuple[JoinSpec, ...]
    fd_dag: FDDag
    filter: tuple[FilterCondition, ...]
    stability: StabilityPolicy | None
    families: Mapping[str, MetricFamily]
    file: Path | None = None

    # -- lookups with helpful errors -------------------------------------------------------------
    def schema(self, name: str) -> SchemaSpec:
        return _lookup(self.schemas, name, "schema", self.name)

    def dimension(self, name: str) -> DimensionSpec:
        return _lookup(self.dimensions, name, "dimension", self.name)

    def family(self, name: str) -> MetricFamily:
        return _lookup(self.families, name, "metric family", self.name)

    def filters_for(self, schema: str) -> tuple[FilterCondition, ...]:
        return tuple(c for c in self.filter if c.schema == schema)

    @property
    def day_dimension(self) -> str | None:
        """The dimension at day grain bound to a date column (partitions are keyed on it)."""
        for dim in self.dimensions.values():
            if dim.time_grain is TimeGrain.DAY and dim.derived_from is None:
                return dim.name
        return None

    def canonical_grain(self, dims: tuple[str, ...] | list[str]) -> Grain:
        """A grain in declaration order with duplicates removed, so equal grains compare equal."""
        order = {name: i for i, name in enumerate(self.dimensions)}
        for dim in dims:
            self.dimension(dim)
        return tuple(sorted(set(dims), key=order.__getitem__))

    # -- dimension resolution ---------------------------------------------------------------------
    def join_path(self, root: str, target: str) -> tuple[JoinSpec, ...] | None:
        """The shortest chain of many-to-one joins from ``root`` to ``target`` (empty if equal)."""
        if root == target:
            return ()
        frontier: list[tuple[str, tuple[JoinSpec, ...]]] = [(root, ())]
        seen = {root}
        while frontier:
            nxt: list[tuple[str, tuple[JoinSpec, ...]]] = []
            for schema, path in frontier:
                for join in self.joins:
                    if join.from_schema != schema or join.to_schema in seen:
                        continue
                    chain = (*path, join)
                    if join.to_schema == target:
                        return chain
                    seen.add(join.to_schema)
                    nxt.append((join.to_schema, chain))
            frontier = nxt
        return None

    def binding(self, root: str, dimension: str) -> DimensionBinding | None:
        """How ``dimension`` is read for rows of ``root``, or None when it cannot be reached."""
        dim = self.dimension(dimension)
        if dim.derived_from is not None:
            base = self.binding(root, dim.derived_from)
            if base is None:
                return None
            return DimensionBinding(dimension, base.schema, base.column, base.join_path, dim.time_grain)
        best: DimensionBinding | None = None
        for schema, column in dim.columns.items():
            path = self.join_path(root, schema)
            if path is not None and (best is None or len(path) < len(best.join_path)):
                best = DimensionBinding(dimension, schema, column, path, dim.time_grain)
        return best

    def bindings(self, root: str, grain: Grain) -> tuple[DimensionBinding, ...]:
        out = []
        for dim in grain:
            found = self.binding(root, dim)
            if found is None:
                msg = (
                    f"dimension {dim!r} cannot be reached from schema {root!r} in AC {self.name!r}: "
                    "bind it to a column of that schema or declare a join to a schema that has it"
                )
                raise UnknownNameError(msg)
            out.append(found)
        return tuple(out)


def _lookup(items: Mapping[str, _T], name: str, what: str, ac: str) -> _T:
    try:
        return items[name]
    except KeyError:
        known = ", ".join(sorted(items)) or "none"
        msg = f"unknown {what} {name!r} in AC {ac!r}{did_you_mean(name, items)} (known: {known})"
        raise UnknownNameError(msg) from None
