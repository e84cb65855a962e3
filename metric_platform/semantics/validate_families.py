"""Validating metric families (seed 003 §9.2) against an otherwise valid AC.

A family's ``base_grain`` is the grain of its daily-partitioned asset: it contains the day
dimension, and every ``cache_hint`` grain must roll up from it along the FD-DAG. When absent it is
derived: the day dimension plus the minimal set of non-time dimensions from which every cache-hint
dimension is reachable (hints ``[region]`` and ``[store, day]`` give ``[store, day]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pydantic import ValidationError

from metric_platform.semantics.fingerprint import family_fingerprint
from metric_platform.semantics.issues import IssueCollector
from metric_platform.semantics.literals import coerce_literal
from metric_platform.semantics.models import ImputeModel, MetricFamilyModel
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.spec import AnalyticalContext, Grain, IpReducer, MetricFamily
from metric_platform.semantics.types import ColumnType, MissingValueKind, MissingValueTreatment


def build_families(
    models: Sequence[MetricFamilyModel], ac: AnalyticalContext, issues: IssueCollector
) -> dict[str, MetricFamily]:
    families: dict[str, MetricFamily] = {}
    seen: set[str] = set()  # every name, valid or not, so a duplicate of an invalid family shows too
    for i, model in enumerate(models):
        path = f"metric_families[{i}]"
        if model.name in seen:
            issues.add(
                f"{path}.name", f"duplicate metric family {model.name!r}", "give every family its own name"
            )
            continue
        seen.add(model.name)
        family = _family(model, path, ac, issues)
        if family is not None:
            families[family.name] = family
    return families


def _family(
    model: MetricFamilyModel, path: str, ac: AnalyticalContext, issues: IssueCollector
) -> MetricFamily | None:
    n_before = len(issues.issues)
    if issues.identifier(f"{path}.name", model.name, "metric family name") and model.name in ac.dimensions:
        issues.add(
            f"{path}.name",
            f"family {model.name!r} has the name of a dimension",
            "rename it: results hold both as columns",
        )
    root = model.family_root
    schema = ac.schemas.get(root.schema_)
    if schema is None:
        issues.unknown(
            f"{path}.family_root.schema",
            "schema",
            root.schema_,
            ac.schemas,
            "root the family in a declared schema",
        )
        return None
    if root.column not in schema.columns:
        issues.unknown(
            f"{path}.family_root.column",
            "column",
            root.column,
            schema.columns,
            f"use a column of {root.schema_!r}",
        )
        return None
    col_type = schema.columns[root.column]
    reducer = _reducer(model, path, ac, issues)
    if reducer is not None and not reducer.operator.info.accepts_type(col_type):
        accepted = ", ".join(sorted(t.value for t in reducer.operator.info.accepts))
        issues.add(
            f"{path}.ip_reducers[0].operator",
            f"{reducer.operator} cannot reduce {root.schema_}.{root.column}, a {col_type} column",
            f"{reducer.operator} takes {accepted} columns; pick another operator or column",
        )
    mvt = _mvt(model, path, col_type, issues)
    grains = _grains(model, path, ac, issues)
    if reducer is None or mvt is None or grains is None or len(issues.issues) > n_before:
        return None
    base, hints = grains
    if not reducer.operator.partition_invariant:
        for k, hint in enumerate(hints):
            if hint != base:
                issues.add(
                    f"{path}.cache_hint.materialize_at[{k}]",
                    f"{reducer.operator} is not partition-invariant, "
                    f"so [{', '.join(hint)}] cannot be rolled up "
                    f"from the base grain [{', '.join(base)}]",
                    "drop the hint, or declare it as the family's base_grain"
                    if ac.day_dimension in hint
                    else "drop the hint: a grain without the day dimension cannot be the base_grain",
                )
                return None
    family = MetricFamily(model.name, root.schema_, root.column, reducer, mvt, base, hints)
    return dataclasses.replace(family, fingerprint=family_fingerprint(family, ac))


def _reducer(
    model: MetricFamilyModel, path: str, ac: AnalyticalContext, issues: IssueCollector
) -> IpReducer | None:
    if len(model.ip_reducers) != 1:
        issues.add(
            f"{path}.ip_reducers",
            f"{len(model.ip_reducers)} ip_reducers declared; this version supports exactly one per family",
            "split the family into one family per reducer",
        )
        return None
    raw = model.ip_reducers[0]
    ops = [o.value for o in Operator]
    if raw.operator.upper() not in ops:
        issues.add(
            f"{path}.ip_reducers[0].operator",
            f"unknown operator {raw.operator!r}",
            f"use one of: {', '.join(ops)}",
        )
        return None
    blocks = {d.block for d in ac.dimensions.values()} | {"time"}
    for k, block in enumerate(raw.a_block):
        if block not in blocks:
            issues.unknown(
                f"{path}.ip_reducers[0].a_block[{k}]",
                "A-block",
                block,
                blocks,
                "name a dimension block (`time` or a dimension's block)",
            )
    return IpReducer(Operator(raw.operator.upper()), tuple(raw.a_block))


def _mvt(
    model: MetricFamilyModel, path: str, col_type: ColumnType, issues: IssueCollector
) -> MissingValueTreatment | None:
    raw, where = model.missing_values, f"{path}.missing_values"
    fix = "use skip, propagate or {impute: <value>}"
    if isinstance(raw, str):
        if raw not in (MissingValueKind.SKIP, MissingValueKind.PROPAGATE):
            issues.add(where, f"unknown treatment {raw!r}", fix)
            return None
        return MissingValueTreatment(MissingValueKind(raw))
    if not isinstance(raw, dict):
        issues.add(where, f"{raw!r} is not a missing-value treatment", fix)
        return None
    try:
        impute = ImputeModel.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            issues.add(where, err["msg"], f"remove or rename the key; {fix}")
        return None
    value = coerce_literal(impute.impute, col_type, f"{where}.impute", issues)
    return None if value is None else MissingValueTreatment(MissingValueKind.IMPUTE, value)


def _grains(
    model: MetricFamilyModel, path: str, ac: AnalyticalContext, issues: IssueCollector
) -> tuple[Grain, tuple[Grain, ...]] | None:
    root = model.family_root.schema_
    day = ac.day_dimension
    if day is None or ac.binding(root, day) is None:
        issues.add(
            path,
            f"no day dimension reaches schema {root!r}; families are partitioned by day",
            f"bind a day dimension to a date column of {root!r} (or of a schema it joins)",
        )
        return None
    hints: list[Grain] = []
    raw_hints = model.cache_hint.materialize_at if model.cache_hint else []
    for k, raw in enumerate(raw_hints):
        grain = _grain(raw, f"{path}.cache_hint.materialize_at[{k}]", root, ac, issues)
        if grain is None:
            continue
        if grain in hints:
            issues.add(
                f"{path}.cache_hint.materialize_at[{k}]",
                f"grain [{', '.join(grain)}] listed twice",
                "remove the duplicate",
            )
            continue
        hints.append(grain)
    if model.base_grain is None:
        base = derive_base_grain(hints, day, ac)
    else:
        found = _grain(model.base_grain, f"{path}.base_grain", root, ac, issues)
        if found is None:
            return None
        base = found
        if day not in base:
            issues.add(
                f"{path}.base_grain",
                f"base_grain [{', '.join(base)}] lacks the day dimension {day!r}",
                f"add {day!r}: the family's asset is partitioned by day",
            )
            return None
    for k, hint in enumerate(hints):
        missing = ac.fd_dag.unreachable(base, hint)
        if missing:
            issues.add(
                f"{path}.cache_hint.materialize_at[{k}]",
                f"cache_hint grain [{', '.join(hint)}] is not reachable in the FD-DAG from the base grain "
                f"[{', '.join(base)}]: nothing there determines {', '.join(missing)}",
                "declare the missing fd_edges (e.g. [day, month]) or add a finer dimension to base_grain",
            )
    return base, tuple(hints)


def _grain(
    raw: list[str], path: str, root: str, ac: AnalyticalContext, issues: IssueCollector
) -> Grain | None:
    ok = True
    for k, dim in enumerate(raw):
        if dim not in ac.dimensions:
            issues.unknown(f"{path}[{k}]", "dimension", dim, ac.dimensions, "use a declared dimension")
            ok = False
        elif ac.binding(root, dim) is None:
            issues.add(
                f"{path}[{k}]",
                f"dimension {dim!r} cannot be reached from schema {root!r}",
                f"bind {dim!r} to a column of {root!r} or declare a join to a schema that has it",
            )
            ok = False
    if len(set(raw)) != len(raw):
        issues.add(path, f"grain [{', '.join(raw)}] repeats a dimension", "list each dimension once")
        ok = False
    return ac.canonical_grain(raw) if ok else None


def derive_base_grain(hints: Sequence[Grain], day: str, ac: AnalyticalContext) -> Grain:
    """The day dimension plus the minimal non-time dimensions determining every hint dimension."""
    wanted = {dim for hint in hints for dim in hint if not ac.dimensions[dim].is_time}
    minimal = {d for d in wanted if not any(o != d and ac.fd_dag.determines(o, d) for o in wanted)}
    return ac.canonical_grain([*minimal, day])
