"""Ledger retention: delete whole finished runs, and the monthly partitions they leave empty.

This stands in for Temporal's continue-as-new (seed 004 §6). There, a workflow's history is
rotated so that it never grows without bound; here Dagster keeps its own run history, and what
grows is the ledger. It is bounded by deleting, after a retention period, every run that has
finished, as a unit: its events, its snapshot row and its run row go in one transaction, so a
reader never sees half a run, and a run whose latest event is not terminal (RunCompleted,
RunFailed, RunCancelled) is never touched, however old. A whole run lives in one partition
(``schema.py``), so on PostgreSQL a month's partition is dropped, not vacuumed row by row, once no
run of it remains; retention also adds the partitions of the coming months.

On SQLite ``position`` is allocated as ``max + 1``: deleting the run that holds the newest
position would let the next append reuse a position the projector has already passed, so that one
run is kept until a newer event exists (it goes at the next pass).

An event appended to a run after it was pruned (a late spool replay) starts a new run row at
runSeq 1; choose ``before`` well beyond the spool's replay horizon.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from metric_platform import write_guard
from metric_platform.db import read_transaction, write_transaction
from metric_platform.errors import StorageError
from metric_platform.ledger import partitions
from metric_platform.ledger.events import EventType
from metric_platform.ledger.schema import run_events, run_snapshots, runs
from metric_platform.ledger.store import as_utc

log = logging.getLogger(__name__)

WRITE_KIND = "ledger.prune"
TERMINAL_EVENTS: frozenset[EventType] = frozenset(
    {EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED}
)
_PARTITION_LOCK_TIMEOUT_MS = 5_000


@dataclass(frozen=True)
class RunSummary:
    """What retention needs to know about one run: its latest event (None: it has none)."""

    run_id: str
    run_epoch: dt.date
    created_at: dt.datetime
    events: int
    last_event_type: str | None
    last_position: int | None


@dataclass(frozen=True)
class PruneDecision:
    prune: tuple[RunSummary, ...]
    kept_unfinished: tuple[str, ...]  # created before the cutoff, latest event not terminal
    kept_newest: tuple[str, ...]  # SQLite: holds the newest position (see the module docstring)


@dataclass(frozen=True)
class PruneReport:
    runs_deleted: int
    events_deleted: int
    snapshots_deleted: int
    kept_unfinished: tuple[str, ...]
    kept_newest: tuple[str, ...]
    partitions_dropped: tuple[str, ...] = ()
    partitions_created: tuple[str, ...] = ()
    dry_run: bool = False  # nothing was written; the counts say what a real pass would delete


def decide(
    candidates: Sequence[RunSummary], *, before: dt.date, newest_position: int | None
) -> PruneDecision:
    """Which of ``candidates`` to delete: created before ``before`` (UTC midnight) and finished.

    ``newest_position`` is the ledger's highest position when positions are allocated as
    ``max + 1`` (SQLite), else None.
    """
    cutoff = dt.datetime.combine(before, dt.time(), dt.UTC)
    prune: list[RunSummary] = []
    unfinished: list[str] = []
    newest: list[str] = []
    for run in sorted(candidates, key=lambda r: r.run_id):
        if run.created_at >= cutoff:
            continue
        if run.last_event_type not in TERMINAL_EVENTS:
            unfinished.append(run.run_id)
        elif newest_position is not None and run.last_position == newest_position:
            newest.append(run.run_id)
        else:
            prune.append(run)
    return PruneDecision(tuple(prune), tuple(unfinished), tuple(newest))


def prune_runs(engine: Engine, *, before: dt.date, now: dt.datetime, batch_size: int = 200) -> PruneReport:
    """Delete every finished run created before ``before``, whole; on PostgreSQL drop the monthly
    partitions left empty and add the ones due up to two months after ``now``.

    Runs are deleted in batches, each in its own transaction that re-reads and locks its runs
    first, so a run that received an event since the first read is left alone. Under a dry run
    nothing is written: the report says what would be deleted.
    """
    with read_transaction(engine) as conn:
        decision = decide(
            _summaries(conn, before=before), before=before, newest_position=_newest_position(conn)
        )
    if not write_guard.permit(WRITE_KIND, max(len(decision.prune), 1)):
        return PruneReport(
            runs_deleted=len(decision.prune),
            events_deleted=sum(run.events for run in decision.prune),
            snapshots_deleted=0,
            kept_unfinished=decision.kept_unfinished,
            kept_newest=decision.kept_newest,
            dry_run=True,
        )
    deleted = events = snapshots = 0
    ids = [run.run_id for run in decision.prune]
    for start in range(0, len(ids), batch_size):
        with write_transaction(engine) as conn:
            got = _delete_batch(conn, ids[start : start + batch_size], before=before)
        deleted, events, snapshots = deleted + got[0], events + got[1], snapshots + got[2]
    dropped, created = _maintain_partitions(engine, before=before, now=now)
    log.info(
        "ledger retention: %d runs (%d events) deleted; %d unfinished runs kept; partitions dropped %s",
        deleted,
        events,
        len(decision.kept_unfinished),
        list(dropped) or "none",
    )
    return PruneReport(
        runs_deleted=deleted,
        events_deleted=events,
        snapshots_deleted=snapshots,
        kept_unfinished=decision.kept_unfinished,
        kept_newest=decision.kept_newest,
        partitions_dropped=dropped,
        partitions_created=created,
    )


def _summary_query(
    before: dt.date,
) -> sa.Select[tuple[str, dt.date, dt.datetime, int, str | None, int | None]]:
    cutoff = dt.datetime.combine(before, dt.time(), dt.UTC)
    latest = run_events.alias("latest")
    # runSeq is gapless, so the run's latest event is the one at last_seq.
    joined = runs.outerjoin(
        latest,
        sa.and_(
            latest.c.run_epoch == runs.c.run_epoch,
            latest.c.run_id == runs.c.run_id,
            latest.c.run_seq == runs.c.last_seq,
        ),
    )
    return (
        sa.select(
            runs.c.run_id,
            runs.c.run_epoch,
            runs.c.created_at,
            runs.c.last_seq,
            latest.c.event_type,
            latest.c.position,
        )
        .select_from(joined)
        .where(runs.c.created_at < cutoff)
        .order_by(runs.c.run_id)
    )


def _summaries(
    conn: Connection, *, before: dt.date, run_ids: Sequence[str] | None = None
) -> list[RunSummary]:
    query = _summary_query(before)
    if run_ids is not None:
        query = query.where(runs.c.run_id.in_(run_ids)).with_for_update(of=runs)
    return [
        RunSummary(
            run_id=row.run_id,
            run_epoch=row.run_epoch,
            created_at=as_utc(row.created_at),
            events=int(row.last_seq),
            last_event_type=row.event_type,
            last_position=None if row.position is None else int(row.position),
        )
        for row in conn.execute(query)
    ]


def _newest_position(conn: Connection) -> int | None:
    if conn.dialect.name == "postgresql":
        return None  # a sequence: positions are never reused
    newest = conn.execute(sa.select(sa.func.max(run_events.c.position))).scalar_one()
    return None if newest is None else int(newest)


def _delete_batch(conn: Connection, run_ids: Sequence[str], *, before: dt.date) -> tuple[int, int, int]:
    """Re-read and lock ``run_ids``, then delete those still finished; (runs, events, snapshots)."""
    decision = decide(
        _summaries(conn, before=before, run_ids=run_ids),
        before=before,
        newest_position=_newest_position(conn),
    )
    if not decision.prune:
        return 0, 0, 0
    events = 0
    by_epoch: dict[dt.date, list[str]] = {}
    for run in decision.prune:
        by_epoch.setdefault(run.run_epoch, []).append(run.run_id)
    for epoch, ids in sorted(by_epoch.items()):
        # The epoch in the predicate confines the delete to the run's partition on PostgreSQL.
        result = conn.execute(
            sa.delete(run_events).where(run_events.c.run_epoch == epoch, run_events.c.run_id.in_(ids))
        )
        events += int(result.rowcount or 0)
    ids = [run.run_id for run in decision.prune]
    snapshots = int(
        conn.execute(sa.delete(run_snapshots).where(run_snapshots.c.run_id.in_(ids))).rowcount or 0
    )
    deleted = int(conn.execute(sa.delete(runs).where(runs.c.run_id.in_(ids))).rowcount or 0)
    return deleted, events, snapshots


def _maintain_partitions(
    engine: Engine, *, before: dt.date, now: dt.datetime
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if engine.dialect.name != "postgresql":
        return (), ()
    today = as_utc(now).date()
    # Never the current month's partition, whatever ``before`` says.
    drop_before = min(before, partitions.month_start(today))
    through = partitions.add_months(partitions.month_start(today), 2)
    try:
        with write_transaction(engine, timeout_ms=_PARTITION_LOCK_TIMEOUT_MS) as conn:
            dropped = partitions.drop_expired(conn, drop_before)
            created = partitions.ensure_partitions(conn, through, today=today)
    except StorageError as exc:
        log.warning("ledger retention: partitions left as they are this time: %s", exc)
        return (), ()
    return tuple(dropped), tuple(created)
