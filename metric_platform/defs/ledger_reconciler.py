"""The durable path of the ledger's Run* events: a sensor that reconciles Dagster's run records
with the ledger (seed 004 §1.2, issue 5 item 10).

The run-status sensors (``ledger_sensors.py``) record a transition as it happens, but Dagster
advances a run-status sensor's cursor even when its function raises: an event the ledger could not
take then would be lost. This sensor reads the runs Dagster updated since its cursor, in update
order, and appends the Run* events each one has reached (RunStarted once it started, and its
terminal event). Appends are idempotent, so what the run-status sensors recorded already is a
duplicate. Its cursor moves only after a tick succeeded: a ledger that is down is retried on the
next tick, from the same place. It also replays the local spool of events that failed open.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import dagster as dg

from metric_platform.defs.ledger_sensors import DRY_RUN_TAG, run_event
from metric_platform.ledger.spool import Spool
from metric_platform.ledger.store import AppendOutcome, RunEventStore

log = logging.getLogger(__name__)

TERMINAL: dict[dg.DagsterRunStatus, dg.DagsterRunStatus] = {
    dg.DagsterRunStatus.SUCCESS: dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE: dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED: dg.DagsterRunStatus.CANCELED,
}
_BATCH = 200


def reconcile(
    instance: dg.DagsterInstance,
    store: RunEventStore,
    *,
    since: float | None,
    limit: int = _BATCH,
) -> tuple[int, float | None]:
    """Append the Run* events of runs updated after ``since`` (a Unix time; None: every run), in
    update order, at most ``limit`` runs; returns (events appended, the newest update time read)."""
    after = None if since is None else dt.datetime.fromtimestamp(since, dt.UTC)
    records = instance.get_run_records(
        filters=dg.RunsFilter(updated_after=after), limit=limit, order_by="update_timestamp", ascending=True
    )
    appended = 0
    newest = since
    for record in records:
        run = record.dagster_run
        stamp = record.update_timestamp.timestamp()
        newest = stamp if newest is None else max(newest, stamp)
        if run.tags.get(DRY_RUN_TAG) == "true":
            continue
        statuses = []
        if record.start_time is not None:
            statuses.append(dg.DagsterRunStatus.STARTED)
        if run.status in TERMINAL:
            statuses.append(run.status)
        for status in statuses:
            result = store.append(run_event(run, status, instance, attempts=store))
            appended += result.outcome is AppendOutcome.APPENDED
    return appended, newest


def ledger_reconciler_sensor(
    open_store: Callable[[], RunEventStore],
    *,
    spool: Spool | None = None,
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="ledger_run_reconciler",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Records in the ledger every Run* event Dagster's run records show and the ledger lacks.",
    )
    def _reconcile(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        since = float(context.cursor) if context.cursor else None
        store = open_store()
        try:
            replayed = spool.replay(store).replayed if spool is not None and spool.has_pending() else 0
            appended, newest = reconcile(context.instance, store, since=since)
        finally:
            store.close()
        if newest is not None:
            # A little before the newest update read: runs updated in the same instant but beyond
            # this batch's limit are read next time (re-reading one is a duplicate, never a loss).
            context.update_cursor(repr(newest - 0.001))
        return dg.SkipReason(
            f"ledger: {appended} Run* event(s) recorded, {replayed} spooled event(s) replayed"
        )

    return _reconcile
