"""The engine-backed works: serve, query, profile, refresh, evict (the CLI's writing commands, and
the Dagster assets' bodies in ``defs/``).

Each work checks its parameters against the AC in ``prepare`` (pure: names, grains, expressions),
so a bad request fails before anything runs, and opens the engine only in ``run``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.frame_expr import DerivedMetric, FrameExpression
from metric_platform.engine.query import QueryRequest, check_query
from metric_platform.engine.serving.grains import GrainPlanner
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.execution.context import ExecutionContext
from metric_platform.execution.work import Work, WorkOutcome
from metric_platform.ledger.events import JSONValue
from metric_platform.works.artifacts import entry_refs
from metric_platform.works.base import EngineWork, Session, with_backend
from metric_platform.works.params import EvictParams, ProfileParams, QueryParams, RefreshParams, ServeParams
from metric_platform.works.quality import QualityWork
from metric_platform.works.query_ops import parse_ops
from metric_platform.works.serve_figures import bucket_figures, preview
from metric_platform.works.workspace import EngineWorkspace


class ServeWork(EngineWork[ServeParams]):
    """One metric family at one anchor over the scope's days (seed 003 §4)."""

    name = "engine.serve"
    params_model = ServeParams

    def check(self, params: ServeParams, window: DateWindow | None) -> Any:
        ac = self.workspace.ac
        ac.family(params.family)
        for dim in params.anchor:
            ac.dimension(dim)
        return None

    def compute(
        self,
        session: Session,
        context: ExecutionContext,
        params: ServeParams,
        window: DateWindow | None,
        _: Any,
    ) -> WorkOutcome:
        engine, backend = with_backend(session)
        served = engine.serve_metric(
            params.family,
            params.anchor,
            backend=backend,
            window=window,
            pin=params.pin,
            recompute=params.recompute,
            refresh=params.refresh,
            trust_base=params.trust_base,
            explain=params.explain,
        )
        frame = served.frame.collect()
        p = served.provenance
        # The served grain's entries in the window: an indexed manifest read, not a scan of the
        # whole manifest (this runs once per Dagster partition).
        base = EntryKey(
            self.workspace.ac.name,
            Domain.METRIC,
            params.family,
            self.workspace.ac.canonical_grain(params.anchor),
        )
        whole = engine.store.get(base)
        entries = [
            *engine.store.list_slices(
                base, start=window.start if window else None, end=window.end if window else None
            ),
            *([whole] if whole is not None else []),
        ]
        summary: dict[str, JSONValue] = {
            "family": params.family,
            "anchor": list(params.anchor),
            "rows": frame.height,
            "path": p.path.kind.value,
            "provisional": p.provisional,
            "stability_cutoff": p.stability_cutoff.isoformat() if p.stability_cutoff else None,
            "verification_level": p.verification_level,
        }
        if params.figures:
            time_dims = GrainPlanner(self.workspace.ac).time_dims(tuple(params.anchor))
            time_column = time_dims[0][0] if time_dims else None
            summary |= {
                "explain": p.path.describe(),
                "source_anchor": list(p.path.source_anchor),
                "backend_ranges": [f"{r.start}..{r.end}" for r in p.path.backend_ranges],
                "bytes": sum(e.byte_size for e in entries),
                "buckets": bucket_figures(frame, time_column, p, entries),
                "preview": preview(frame),
            }
        return WorkOutcome(entry_refs(entries), summary, dataclasses.replace(served, frame=frame.lazy()))


class QueryWork(EngineWork[QueryParams]):
    """Several metrics at one grain, composed, with derived metrics and post-grain ops (seed 003 §8)."""

    name = "engine.query"
    params_model = QueryParams

    def check(self, params: QueryParams, window: DateWindow | None) -> QueryRequest:
        request = QueryRequest(
            metrics=params.metrics,
            grain=params.grain,
            window=window,
            frame_expression=FrameExpression(tuple(DerivedMetric.parse(d) for d in params.derive))
            if params.derive
            else None,
            post_grain_ops=parse_ops(params.ops),
        )
        check_query(self.workspace.ac, request)
        return request

    def compute(
        self,
        session: Session,
        context: ExecutionContext,
        params: QueryParams,
        window: DateWindow | None,
        request: QueryRequest,
    ) -> WorkOutcome:
        engine, backend = with_backend(session)
        frame = engine.query(request, backend=backend)
        summary = {"metrics": list(params.metrics), "grain": list(params.grain), "rows": frame.data.height}
        return WorkOutcome((), summary, frame)


class ProfileWork(EngineWork[ProfileParams]):
    """A QM profile of a source schema, or of one of its columns (seed 003 §5.6)."""

    name = "qm.profile"
    params_model = ProfileParams

    def check(self, params: ProfileParams, window: DateWindow | None) -> Any:
        schema = self.workspace.ac.schema(params.schema_name)
        if params.column is not None:
            schema.column_type(params.column)
        return None

    def compute(
        self,
        session: Session,
        context: ExecutionContext,
        params: ProfileParams,
        window: DateWindow | None,
        _: Any,
    ) -> WorkOutcome:
        engine, backend = with_backend(session)
        before = len(engine.entries(Domain.QM))
        profile: Any
        if params.column is not None:
            profile = engine.column_profile(params.schema_name, params.column, backend=backend)
        else:
            profile = engine.table_profile(params.schema_name, backend=backend)
        entries = [
            e
            for e in engine.entries(Domain.QM)
            if e.key.anchor[:1] == (params.schema_name,)
            and (params.column is None or e.key.anchor[1:2] == (params.column,))
        ]
        summary = {
            "schema": params.schema_name,
            "column": params.column,
            "entries_computed": len(engine.entries(Domain.QM)) - before,  # the rest came from memory
        }
        return WorkOutcome(entry_refs(entries), summary, profile)


class RefreshWork(EngineWork[RefreshParams]):
    """Recompute the slices that crossed the stability cutoff (seed 003 §11). A dry run computes
    them all and keeps nothing (the write guard), and its report says so."""

    name = "engine.refresh"
    params_model = RefreshParams

    def compute(
        self,
        session: Session,
        context: ExecutionContext,
        params: RefreshParams,
        window: DateWindow | None,
        _: Any,
    ) -> WorkOutcome:
        engine, backend = with_backend(session)
        report = engine.refresh(
            backend=backend, provisional=params.provisional, late_updates=params.late_updates
        )
        if context.dry_run:
            report = dataclasses.replace(report, dry_run=True)
        summary = {
            "cutoff": report.cutoff.isoformat() if report.cutoff else None,
            "slices": sum(len(g.days) for g in report.groups),
            "recomputed": report.recomputed,
            "backend_calls": report.backend_calls,
            "late_days": len(report.late_days),
        }
        return WorkOutcome((), summary, report)


class EvictWork(EngineWork[EvictParams]):
    """Evict down to the byte budget (seed 003 §10). Choosing is the computation: a dry run chooses
    and evicts nothing."""

    name = "engine.evict"
    params_model = EvictParams
    needs_backend = False

    def compute(
        self,
        session: Session,
        context: ExecutionContext,
        params: EvictParams,
        window: DateWindow | None,
        _: Any,
    ) -> WorkOutcome:
        engine, _backend = session
        report = engine.enforce_budget(to_bytes=params.to_bytes, dry_run=context.dry_run)
        summary = {
            "policy": report.policy,
            "budget": report.budget,
            "units": len(report.evicted),
            "bytes": sum(u.bytes for u in report.evicted),
        }
        return WorkOutcome((), summary, report)


def engine_works(workspace: EngineWorkspace) -> tuple[Work, ...]:
    """Every engine-backed work, bound to ``workspace``."""
    return tuple(cls(workspace) for cls in _WORKS)


_WORKS: tuple[type[EngineWork[Any]], ...] = (
    ServeWork,
    QueryWork,
    ProfileWork,
    RefreshWork,
    EvictWork,
    QualityWork,
)
