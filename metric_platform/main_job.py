"""The main job, run by the README's first command: everything a fresh clone can do end to end.

At this stage: make sure a fresh sample exists (ending yesterday, so recent days sit inside the
hold-off window), validate every AC under ``data/acs/``, then, as one ledger run per AC whose steps
all enter through the execution door, profile each AC's source schemas through the engine's QM
domain, refresh what crossed the stability cutoff and serve each metric family at its base and
cache-hint grains; finally project the runs and deliver their outbox messages, and print what was
done.
The committed sample (``data/sample/``) is never modified: ACs reading it are pointed at the
fresh copy under the platform home.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from metric_platform.engine.engine import MetricEngine
from metric_platform.errors import ConfigError, ConfigIssue
from metric_platform.execution.results import ExecutionResult
from metric_platform.ledger.delivery import deliver
from metric_platform.ledger.projector import Projector, load_snapshot
from metric_platform.ledger.sinks import LogSink
from metric_platform.platform_db import open_platform_db
from metric_platform.sample_data import SampleSpec, ensure_sample
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext, SourceKind
from metric_platform.settings import Settings
from metric_platform.works.plan_version import plan_version
from metric_platform.works.runner import LedgerRun, outcome_value
from metric_platform.works.workspace import EngineWorkspace


@dataclass(frozen=True)
class MainJobReport:
    acs: tuple[str, ...]
    schemas_profiled: int
    columns_profiled: int
    families_served: int
    seconds: float


def _load(path: Path, fresh_sample: Path, committed: Path) -> AnalyticalContext:
    ac = load_ac(path)
    reads_committed = (
        ac.source.kind is SourceKind.PARQUET
        and ac.source.path is not None
        and ac.source.path == committed.resolve()
    )
    return load_ac(path, source_path=fresh_sample) if reads_committed else ac


def run_main_job(
    *,
    acs_dir: Path = Path("data") / "acs",
    settings: Settings | None = None,
    sample: SampleSpec | None = None,
    committed_sample: Path | None = None,
    out: Callable[[str], None] = print,
) -> MainJobReport:
    """``committed_sample`` defaults to the ``sample`` directory beside ``acs_dir`` (``data/sample``)."""
    settings = settings or Settings()
    committed = committed_sample if committed_sample is not None else acs_dir.parent / "sample"
    started = time.perf_counter()
    ac_files = sorted(acs_dir.glob("*.yaml"))
    if not ac_files:
        msg = f"no analytical contexts (*.yaml) in {acs_dir}; point --acs at a directory of AC files"
        raise ConfigError([ConfigIssue(str(acs_dir), "", msg, "create one from data/acs/retail.yaml")])
    sample_dir = settings.home / "sample"
    written, meta = ensure_sample(sample_dir, sample or SampleSpec())
    verb = "generated" if written else "reused"
    out(
        f"sample data {verb}: {sample_dir} "
        f"({meta['rows']} transactions, {meta['days']} days to {meta['end_date']})"
    )

    names: list[str] = []
    run_ids: list[str] = []
    schemas = columns = families = 0
    for path in ac_files:
        ac = _load(path, sample_dir, committed)
        names.append(ac.name)
        out(
            f"\nAC {ac.name!r} valid ({path}): {len(ac.schemas)} schemas, {len(ac.dimensions)} dimensions, "
            f"{len(ac.families)} metric families; source {ac.source.identity}"
        )
        workspace = EngineWorkspace(ac, settings)
        # One ledger run per AC: every step enters through the one execution door.
        with LedgerRun(workspace, plan_version=plan_version(ac, "main", {}), label="main") as run:
            run_ids.append(run.run_id)
            for schema in ac.schemas:
                result = run.execute("qm.profile", {"schema_name": schema}, step_id=f"qm.profile[{schema}]")
                profile = outcome_value(result)
                computed = int(_summary(result).get("entries_computed", 0))
                schemas += 1
                columns += len(profile.columns)
                out(
                    f"  profiled {schema}: {profile.row_count} rows, {len(profile.columns)} columns "
                    f"({computed} computed, {len(profile.columns) - computed} from the engine's memory)"
                )
            # Days that crossed the stability cutoff since the last run are recomputed first.
            refreshed = outcome_value(run.execute("engine.refresh", {}))
            out(
                f"  refreshed {refreshed.recomputed} stale slice(s) under the stability cutoff "
                f"{refreshed.cutoff} ({refreshed.backend_calls} backend calls)"
            )
            for family in ac.families.values():
                families += 1
                for grain in dict.fromkeys((family.base_grain, *family.cache_grains)):
                    step = f"engine.serve[{family.name}@{','.join(grain)}]"
                    served = outcome_value(
                        run.execute("engine.serve", {"family": family.name, "anchor": grain}, step_id=step)
                    )
                    rows = served.frame.select(pl.len()).collect().item()
                    out(
                        f"  served {family.name} at [{', '.join(grain)}]: {rows} rows — "
                        f"{served.provenance.path.describe()}"
                    )
        engine = MetricEngine.open(ac, settings)
        try:
            totals = engine.store.byte_totals(ac.name)
            out(
                f"  store: {totals.evictable} evictable and {totals.pinned} pinned bytes "
                f"(budget {settings.max_bytes_per_ac} per AC)"
            )
            # Files retired by replacements (past their grace) and orphans of crashed writers.
            swept = engine.store.sweep(ac_name=ac.name)
            out(
                f"  swept the store: {swept.files_deleted} retired and {swept.orphans_deleted} orphaned "
                f"files removed ({swept.bytes_freed} bytes)"
            )
        finally:
            engine.close()
    _ledger_summary(settings, run_ids, out)
    seconds = time.perf_counter() - started
    out(
        f"\nmain job done in {seconds:.1f}s: {len(names)} AC(s), {schemas} schemas / {columns} columns "
        f"profiled, {families} families served; engine store under {settings.home}"
    )

    return MainJobReport(tuple(names), schemas, columns, families, seconds)


def _summary(result: ExecutionResult) -> Mapping[str, Any]:
    assert result.outcome is not None
    return result.outcome.summary


def _ledger_summary(settings: Settings, run_ids: Sequence[str], out: Callable[[str], None]) -> None:
    """Project the runs just recorded and deliver their outbox messages (the Dagster deployment
    runs both as sensors; here, one pass each)."""
    engine = open_platform_db(settings.platform_url)
    try:
        projected = Projector(engine).poll()
        delivered = deliver(engine, LogSink(), now=dt.datetime.now(dt.UTC))
        statuses = [load_snapshot(engine, run_id) for run_id in run_ids]
    finally:
        engine.dispose()
    done = ", ".join(f"{s.run_id} {s.status.value} ({len(s.steps)} steps)" for s in statuses if s is not None)
    out(
        f"\nledger: {len(run_ids)} run(s) recorded: {done}; the projector applied {projected.applied} "
        f"event(s); the outbox delivered {delivered.delivered} message(s) to the log sink"
    )
    if run_ids:
        out(f"  a run's steps and events: metric-platform ledger show {run_ids[-1]}")
