"""The parameters of each engine-backed work: frozen, JSON-shaped, validated before anything runs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServeParams(_Params):
    family: str = Field(min_length=1)
    anchor: tuple[str, ...] = ()
    explain: bool = False
    pin: bool = False  # keep the result and protect it from eviction (a Dagster partition)
    recompute: bool = False
    refresh: bool = False
    trust_base: bool = False  # with refresh: roll provisional buckets up from the family's base slices
    # Per-bucket figures and a preview in the summary: a Dagster materialization's metadata.
    figures: bool = False


OpKind = Literal["having", "order", "limit", "per"]


class QueryParams(_Params):
    metrics: tuple[str, ...] = Field(min_length=1)
    grain: tuple[str, ...] = ()
    derive: tuple[str, ...] = ()  # NAME=EXPR
    ops: tuple[tuple[OpKind, str], ...] = ()  # post-grain operations in the order given


class ProfileParams(_Params):
    schema_name: str = Field(min_length=1)
    column: str | None = None


class RefreshParams(_Params):
    provisional: bool = False
    late_updates: bool = False


class EvictParams(_Params):
    to_bytes: int | None = Field(default=None, ge=0)
