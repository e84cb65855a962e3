"""The main job, run by the README's first command: every sample AC's Dagster assets materialized
headless, end to end, on the embedded instance.

1. Make sure each committed sample an AC reads has a fresh copy ending yesterday (so the newest days
   sit inside the hold-off window), and validate every AC under ``data/acs/``.
2. Prepare a repository-local ``DAGSTER_HOME`` (``.metric_platform/dagster_home``, holding a copy of
   the top-level ``dagster.yaml``): a temporary home would vanish with the results.
3. For each AC, through the code location's own definitions (``defs/build.py``): the profile assets
   and their checks; every family asset over the sample's days as one range run (one backend call
   per family and missing range); each cache-hint grain over the whole buckets inside those days (a
   range run per partitioning, rolled up from memory); the unpartitioned assets.
4. Record the runs' Run* events in the ledger (the reconciler's pass: no daemon runs here), project
   the ledger and deliver its outbox, and print a summary with the command that opens the UI on the
   same instance.

Run it twice: the second run serves the stable days from the engine's memory and recomputes only
the provisional ones. The committed samples are never modified.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from metric_platform.acs import ensure_fresh_samples, load_acs
from metric_platform.backends.protocol import DateWindow
from metric_platform.defs.build import build_definitions
from metric_platform.defs.instance import open_instance, prepare_dagster_home
from metric_platform.defs.ledger_reconciler import reconcile
from metric_platform.defs.plan import MaterializationStep, materialization_plan
from metric_platform.engine.engine import MetricEngine
from metric_platform.errors import InternalError
from metric_platform.ledger.delivery import deliver
from metric_platform.ledger.projector import Projector
from metric_platform.ledger.sinks import LogSink
from metric_platform.ledger.store import RunEventStore
from metric_platform.platform_db import open_platform_db
from metric_platform.sample_data import SampleSpec, read_metadata
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings

DAGSTER_YAML = Path("dagster.yaml")
# An AC whose source is not a generated sample is materialized over its last days.
_DEFAULT_DAYS = 30
_ONE_HOUR_S = 3600.0


@dataclass(frozen=True)
class RunSummary:
    ac: str
    label: str
    run_id: str
    success: bool
    materializations: int
    checks: int


@dataclass(frozen=True)
class MainJobReport:
    acs: tuple[str, ...]
    runs: tuple[RunSummary, ...]
    dagster_home: Path
    seconds: float

    @property
    def materializations(self) -> int:
        return sum(r.materializations for r in self.runs)


def sample_window(ac: AnalyticalContext, today: dt.date) -> DateWindow:
    """The days to materialize: the generated sample's days, within the AC's partitions; for any
    other source, its last days up to yesterday."""
    meta = read_metadata(ac.source.path) if ac.source.path is not None else None
    if meta is not None:
        end = dt.date.fromisoformat(str(meta["end_date"]))
        start = end - dt.timedelta(days=int(meta["days"]) - 1)
    else:
        end = today - dt.timedelta(days=1)
        start = end - dt.timedelta(days=_DEFAULT_DAYS - 1)
    start = max(start, ac.partitions.start_date)
    if ac.partitions.end_date is not None:
        end = min(end, ac.partitions.end_date)
    return DateWindow(start, max(start, end))


def run_main_job(
    *,
    acs_dir: Path = Path("data") / "acs",
    settings: Settings | None = None,
    sample: SampleSpec | None = None,
    dagster_home: Path | None = None,
    dagster_yaml: Path = DAGSTER_YAML,
    out: Callable[[str], None] = print,
) -> MainJobReport:
    settings = settings or Settings()
    started = time.perf_counter()
    for copy in ensure_fresh_samples(acs_dir, settings, spec=sample):
        verb = "generated" if copy.written else "reused"
        meta = copy.meta
        out(
            f"sample data {verb}: {copy.fresh} ({meta['rows']} transactions, {meta['days']} days to "
            f"{meta['end_date']}, tenant {meta['tenant_id']})"
        )
    acs = load_acs(acs_dir, settings)
    home = prepare_dagster_home((dagster_home or settings.home / "dagster_home").resolve(), dagster_yaml)
    defs = build_definitions(acs, settings)
    today = dt.date.today()
    runs: list[RunSummary] = []
    with open_instance(home) as instance:
        for ac in acs:
            window = sample_window(ac, today)
            out(
                f"\nAC {ac.name!r} (tenant {ac.tenant_id}, project {ac.project_id}): {len(ac.families)} "
                f"families, source {ac.source.identity}; materializing {window.start}..{window.end}"
            )
            for step in materialization_plan(defs, ac, window, now=dt.datetime.now(dt.UTC)):
                runs.append(_materialize(instance, defs, ac, step, out))
            _store_summary(ac, settings, out)
        recorded = _record_runs(instance, settings)
    _ledger_summary(settings, recorded, runs[-1].run_id if runs else None, out)
    failed = [r for r in runs if not r.success]
    seconds = time.perf_counter() - started
    out(
        f"\nmain job done in {seconds:.1f}s: {len(acs)} AC(s), {len(runs)} Dagster run(s), "
        f"{sum(r.materializations for r in runs)} partition materializations, "
        f"{sum(r.checks for r in runs)} check evaluations; engine stores under {settings.home / 'engine'}"
    )
    out(f"open the UI on these results: DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml")
    if failed:
        names = ", ".join(f"{r.ac}/{r.label} ({r.run_id})" for r in failed)
        msg = f"the main job's runs failed: {names}; see their logs in the UI (command above)"
        raise InternalError(msg)
    return MainJobReport(tuple(ac.name for ac in acs), tuple(runs), home, seconds)


def _materialize(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    ac: AnalyticalContext,
    step: MaterializationStep,
    out: Callable[[str], None],
) -> RunSummary:
    result = dg.materialize(
        list(defs.assets or ()),  # type: ignore[arg-type]  # the build holds AssetsDefinitions only
        instance=instance,
        resources=dict(defs.resources or {}),
        selection=list(step.keys),
        tags=dict(step.tags),
        # The summary below says what happened; Dagster's per-event DEBUG lines are in the UI.
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    events = result.all_events
    materialized = [e for e in events if e.event_type_value == "ASSET_MATERIALIZATION"]
    checks = [e for e in events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    status = "ok" if result.success else "FAILED"
    out(
        f"  {step.label}: run {result.run_id} {status}, {len(materialized)} materialization(s)"
        + (f", {len(checks)} check(s)" if checks else "")
    )
    # A range run records one materialization per partition, all with the range's figures: one
    # line per asset.
    latest = {e.step_materialization_data.materialization.asset_key: e for e in materialized}
    for event in latest.values() if step.describe else ():
        materialization = event.step_materialization_data.materialization
        meta = materialization.metadata
        rows = meta.get("dagster/row_count")
        served = meta.get("served")
        out(
            f"    {materialization.asset_key.to_user_string()}: {rows.value if rows else '?'} rows — "
            f"{served.value if served else ''}"
        )
    if not result.success:
        for event in events:
            if event.is_step_failure and event.step_failure_data is not None:
                error = event.step_failure_data.error
                out(f"    step {event.step_key} failed: {error.message.strip() if error else 'no message'}")
    return RunSummary(ac.name, step.label, result.run_id, result.success, len(materialized), len(checks))


def _store_summary(ac: AnalyticalContext, settings: Settings, out: Callable[[str], None]) -> None:
    with MetricEngine.open(ac, settings) as engine:
        totals = engine.store.byte_totals(ac.name)
        # Files retired by replacements (past their grace) and orphans of crashed writers.
        swept = engine.store.sweep(ac_name=ac.name)
    out(
        f"  engine store: {totals.pinned} pinned and {totals.evictable} evictable bytes "
        f"(budget {settings.max_bytes_per_ac}); swept {swept.files_deleted + swept.orphans_deleted} file(s)"
    )


def _record_runs(instance: dg.DagsterInstance, settings: Settings) -> list[str]:
    """The reconciler's pass (the Dagster daemon runs it as a sensor): RunStarted and the terminal
    Run* event of every run, appended to the ledger; returns the ledger run ids."""
    with RunEventStore.open(settings.platform_url) as store:
        reconcile(instance, store, since=None, limit=100_000)
    records = instance.get_run_records(limit=100_000)
    return sorted({r.dagster_run.root_run_id or r.dagster_run.run_id for r in records})


def _ledger_summary(
    settings: Settings, run_ids: Sequence[str], last: str | None, out: Callable[[str], None]
) -> None:
    """Project the runs just recorded and deliver their outbox messages (the Dagster deployment
    runs both as sensors; here, one pass each)."""
    engine = open_platform_db(settings.platform_url)
    try:
        # One pass at the end of a batch: its lag is the job's length, not a stuck projector.
        projected = Projector(engine, lag_threshold_s=_ONE_HOUR_S).poll()
        delivered = deliver(engine, LogSink(), now=dt.datetime.now(dt.UTC))
    finally:
        engine.dispose()
    out(
        f"\nledger: {len(run_ids)} run(s) in the instance recorded; the projector applied "
        f"{projected.applied} event(s); the outbox delivered {delivered.delivered} message(s) to the log sink"
    )
    if last is not None:
        out(f"  the last run's steps and events: .venv/bin/metric-platform ledger show {last}")
