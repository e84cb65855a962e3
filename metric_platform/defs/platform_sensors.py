"""The platform's background loops as Dagster sensors: the ledger projector and the outbox
delivery (seed 004 §3, §4), and the stability refreshes (seed 003 §11).

Projector and delivery are the loops ``metric-platform ledger project --loop`` / ``deliver --loop``
run outside Dagster: each tick is one pass, and both are safe to run concurrently with themselves
(the projector's watermark and the outbox's leases make a second pass a no-op).

The stability sensor reads ``engine.stale()`` under the dry-run guard, so it never writes (not even
a manifest for an AC nothing was served for yet), and requests one run per (AC, day) for the family
partitions whose memoized day crossed the stability cutoff. The run key holds the cutoff: while the
cutoff stays, a repeated tick is the same request (Dagster runs it once); a run that failed is
requested again under the next day's cutoff. The run recomputes the day (``refresh``) and the
cache-hint grains follow it by their automation conditions.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence

import dagster as dg
from sqlalchemy import Engine

from metric_platform import write_guard
from metric_platform.defs.door import Door
from metric_platform.defs.metric_assets import family_key
from metric_platform.engine.engine import MetricEngine
from metric_platform.ledger.delivery import deliver
from metric_platform.ledger.projector import Projector
from metric_platform.ledger.sinks import LogSink
from metric_platform.platform_db import open_platform_db
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings

REFRESH_TAG = "metric_platform/refresh"
CUTOFF_TAG = "metric_platform/stability_cutoff"


def _platform_db_sensor(
    name: str, description: str, settings: Settings, one_pass: Callable[[Engine], str], interval: int
) -> dg.SensorDefinition:
    """A sensor whose tick is one pass of ``one_pass`` over the platform database (its report is
    the tick's skip reason: these sensors request no runs)."""

    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def _tick(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        engine = open_platform_db(settings.platform_url)
        try:
            return dg.SkipReason(one_pass(engine))
        finally:
            engine.dispose()

    return _tick


def _project(engine: Engine) -> str:
    report = Projector(engine).poll()
    halted = f", {len(report.halted_runs)} run(s) halted at a gap" if report.halted_runs else ""
    return (
        f"projector: {report.applied} event(s) applied to {len(report.runs_updated)} run(s){halted}; "
        f"lag {report.lag_seconds:.1f}s"
    )


def _deliver(engine: Engine) -> str:
    report = deliver(engine, LogSink(), now=dt.datetime.now(dt.UTC))
    return (
        f"outbox: {report.delivered} delivered, {report.retried} to retry, "
        f"{report.dead_lettered} dead-lettered"
    )


def projector_sensor(settings: Settings, *, minimum_interval_seconds: int = 30) -> dg.SensorDefinition:
    return _platform_db_sensor(
        "ledger_projector",
        "Folds new ledger events into run snapshots (one projector pass per tick).",
        settings,
        _project,
        minimum_interval_seconds,
    )


def outbox_sensor(settings: Settings, *, minimum_interval_seconds: int = 30) -> dg.SensorDefinition:
    return _platform_db_sensor(
        "ledger_outbox_delivery",
        "Delivers due outbox messages to their sink, with retries and dead letters.",
        settings,
        _deliver,
        minimum_interval_seconds,
    )


def stability_requests(ac: AnalyticalContext, door: Door) -> list[dg.RunRequest]:
    """The refresh runs ``ac`` needs now: one per day whose family partitions crossed the cutoff."""
    workspace = door.workspace(ac.name)
    today = workspace.today
    clock = dt.date.today if today is None else (lambda: today)
    with write_guard.dry_run(), MetricEngine.open(ac, workspace.settings, today=clock) as engine:
        stale = engine.stale()
        cutoff = engine.stability_cutoff()
    by_day: dict[dt.date, set[str]] = defaultdict(set)
    for group in stale:
        family = ac.families.get(group.family)
        if family is None or group.anchor != family.base_grain:
            continue  # coarser grains follow their family's refreshed days (automation)
        for day in group.days:
            if day >= ac.partitions.start_date and (
                ac.partitions.end_date is None or day <= ac.partitions.end_date
            ):
                by_day[day].add(family.name)
    return [
        dg.RunRequest(
            run_key=f"stability:{ac.name}:{day}:cutoff={cutoff}",
            partition_key=day.isoformat(),
            asset_selection=[family_key(ac, ac.families[name]) for name in sorted(names)],
            tags={REFRESH_TAG: "final", CUTOFF_TAG: str(cutoff)},
        )
        for day, names in sorted(by_day.items())
    ]


def stability_sensor(
    acs: Sequence[AnalyticalContext], door: Door, *, minimum_interval_seconds: int = 300
) -> dg.SensorDefinition:
    keys = [family_key(ac, f) for ac in acs for f in ac.families.values()]

    @dg.sensor(
        name="stability_refresh",
        asset_selection=keys,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests the one final refresh of each family partition whose day crossed the "
        "stability cutoff (run keys include the cutoff).",
    )
    def _stability(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        requests: list[dg.RunRequest] = []
        for ac in acs:
            try:
                requests += stability_requests(ac, door)
            except Exception:  # one AC's broken store must not hold back the others' refreshes
                context.log.exception(f"stability: AC {ac.name!r} could not be read; the others continue")
        if not requests:
            return dg.SkipReason("no memoized day crossed the stability cutoff")
        return dg.SensorResult(run_requests=requests)

    return _stability
