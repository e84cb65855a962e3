"""Pydantic models of the AC YAML file: the raw, user-facing shape.

They check shape only (keys, scalar types); cross-references and meaning are checked by
``semantics.validate``, which turns a model into frozen specs. Unknown keys are rejected with a
did-you-mean hint, because a misspelt optional key would otherwise be silently ignored.
"""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        allowed = set()
        for name, info in cls.model_fields.items():
            allowed.add(info.alias or name)
        unknown = [key for key in data if key not in allowed]
        if unknown:
            parts = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise PydanticCustomError(
                "unknown_key",
                "unknown key {keys}; allowed keys: {allowed}",
                {"keys": ", ".join(parts), "allowed": ", ".join(sorted(allowed))},
            )
        return data


class ColumnRefModel(StrictModel):
    schema_: str = Field(alias="schema")
    column: str


class IpReducerModel(StrictModel):
    operator: str
    a_block: list[str] = Field(default_factory=list)


class CacheHintModel(StrictModel):
    materialize_at: list[list[str]] = Field(default_factory=list)


class ImputeModel(StrictModel):
    impute: int | float | str | bool | dt.date | dt.datetime


class MetricFamilyModel(StrictModel):
    name: str
    description: str | None = None
    family_root: ColumnRefModel
    ip_reducers: list[IpReducerModel]
    # skip | propagate | {impute: value}; parsed in validate_families, because a union here
    # reports each member's failure under a path like `missing_values.ImputeModel`.
    missing_values: Any = "skip"
    base_grain: list[str] | None = None
    cache_hint: CacheHintModel | None = None


class SchemaModel(StrictModel):
    name: str
    table: str
    db_schema: str | None = None
    columns: dict[str, str]
    verification_level: str = "A"
    description: str | None = None


class DimensionModel(StrictModel):
    name: str
    columns: dict[str, str] = Field(default_factory=dict)
    time_grain: str | None = None
    derived_from: str | None = None
    block: str | None = None
    description: str | None = None


class JoinModel(StrictModel):
    from_: str = Field(alias="from")
    to: str
    on: str


class FilterModel(StrictModel):
    schema_: str = Field(alias="schema")
    column: str
    op: str
    value: Any = None


class StabilityModel(StrictModel):
    timestamp: ColumnRefModel
    hold_off_days: int = Field(ge=0)
    provisional: str = "serve"


class PartitionsModel(StrictModel):
    start_date: dt.date
    end_date: dt.date | None = None


class SourceModel(StrictModel):
    kind: str
    path: str | None = None
    url_env: str | None = None
    # Accepted only to reject it with a clear message: connection URLs carry secrets.
    url: Any = None


class ACModel(StrictModel):
    name: str
    description: str | None = None
    tenant_id: str
    project_id: str
    partitions: PartitionsModel
    source: SourceModel
    schemas: list[SchemaModel]
    joins: list[JoinModel] = Field(default_factory=list)
    dimensions: list[DimensionModel] = Field(default_factory=list)
    fd_edges: list[tuple[str, str]] = Field(default_factory=list)
    filter: list[FilterModel] = Field(default_factory=list)
    name_map: dict[str, dict[str, str]] = Field(default_factory=dict)
    stability: StabilityModel | None = None
    metric_families: list[MetricFamilyModel] = Field(default_factory=list)
