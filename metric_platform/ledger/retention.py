"""Ledger retention: delete whole finished runs, and the monthly partitions they leave empty.

This stands in for Temporal's continue-as-new (seed 004 §6). There, a workflow's history is
rotated so that it never grows without bound; here Dagster keeps its own run history, and what
grows is the ledger. It is bounded by deleting, after a retention period, every run that has
finished, as a unit: its events, its snapshot row and its run row go in one transaction, so a
reader never sees half a run, and an unfinished run is never touched, however old. A whole run
lives in one partition (``schema.py``), so on PostgreSQL a month's partition is dropped, not
vacuumed row by row, once no run of it remains; retention also adds the partitions of the coming
months.

A run is finished when its highest logical attempt, over all its events (a re-execution's steps
may be recorded before the sensor records its RunStarted), has a terminal run-level event
(RunCompleted, RunFailed, RunCancelled). Not
"its latest event is terminal": a StepStarted or RunStarted replayed from the spool after the
RunCompleted (seed 004 §5, fail open) comes last in runSeq order without reopening the run. A
re-execution (a newer logical attempt allocated, or with events, and no terminal event of that
attempt yet) is unfinished. A run's allocated attempts (``ledger_run_attempts``) go with it.

Locks: a batch first locks its run rows (``FOR UPDATE SKIP LOCKED``, in run id order), then
re-reads what it decides on and deletes events, snapshot rows and run rows, in that order. The
projector locks a run row (``FOR KEY SHARE``) before its snapshot row, so the two never wait for
each other in a cycle, and a run row another transaction holds (an append in flight, a projector
batch) is skipped, not waited for: it goes at a later pass.

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
from metric_platform.ledger.events import RUN_STEP, EventType
from metric_platform.ledger.schema import run_attempts, run_events, run_snapshots, runs
from metric_platform.ledger.store import as_utc

log = logging.getLogger(__name__)

WRITE_KIND = "ledger.prune"
TERMINAL_EVENTS: frozenset[EventType] = frozenset(
    {EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED}
)
# Under the ledger write budget (3 s): appends queue behind a waiting ACCESS EXCLUSIVE request.
_PARTITION_LOCK_TIMEOUT_MS = 500


@dataclass(frozen=True)
class RunSummary:
    """What retention needs to know about one run.

    ``latest_attempt``: the highest logical attempt of all its events; ``terminal_attempt``: the
    highest logical attempt of its terminal run-level events; ``last_position``: the position of
    its latest event (each None when there is no such event).
    """

    run_id: str
    run_epoch: dt.date
    created_at: dt.datetime
    events: int
    latest_attempt: int | None
    terminal_attempt: int | None
    last_position: int | None

    @property
    def finished(self) -> bool:
        """The run's newest logical attempt ended (see the module docstring)."""
        return self.terminal_attempt is not None and self.terminal_attempt == self.latest_attempt


@dataclass(frozen=True)
class PruneDecision:
    prune: tuple[RunSummary, ...]
    kept_unfinished: tuple[str, ...]  # created before the cutoff, not finished
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
    kept_busy: tuple[str, ...] = ()  # locked by another transaction when their batch ran: next pass


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
        if not run.finished:
            unfinished.append(run.run_id)
        elif newest_position is not None and run.last_position == newest_position:
            newest.append(run.run_id)
        else:
            prune.append(run)
    return PruneDecision(tuple(prune), tuple(unfinished), tuple(newest))


def prune_runs(engine: Engine, *, before: dt.date, now: dt.datetime, batch_size: int = 200) -> PruneReport:
    """Delete every finished run created before ``before``, whole; on PostgreSQL drop the monthly
    partitions left empty and add the ones due up to two months after ``now``.

    Runs are deleted in batches, each in its own transaction that locks its runs first and then
    re-reads them, so a run that was re-executed since the first read is left alone, and a run
    another transaction holds is skipped (``kept_busy``). Under a dry run nothing is written: the
    report says what would be deleted.
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
    busy: list[str] = []
    ids = [run.run_id for run in decision.prune]
    for start in range(0, len(ids), batch_size):
        with write_transaction(engine) as conn:
            got = _delete_batch(conn, ids[start : start + batch_size], before=before)
        deleted, events, snapshots = deleted + got.runs, events + got.events, snapshots + got.snapshots
        busy.extend(got.busy)
    dropped, created = _maintain_partitions(engine, before=before, now=now)
    log.info(
        "ledger retention: %d runs (%d events) deleted; %d unfinished and %d busy runs kept; "
        "partitions dropped %s",
        deleted,
        events,
        len(decision.kept_unfinished),
        len(busy),
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
        kept_busy=tuple(sorted(busy)),
    )


_TERMINAL = tuple(sorted(str(t) for t in TERMINAL_EVENTS))


def _highest_attempt(types: Sequence[str] | None) -> sa.ScalarSelect[int | None]:
    """The highest logical attempt among the correlated run's events: all of them (``types`` None),
    or its run-level events of ``types``."""
    ev = run_events.alias("attempts")
    conditions = [
        ev.c.run_epoch == runs.c.run_epoch,  # the partition key: one partition is read
        ev.c.run_id == runs.c.run_id,
    ]
    if types is not None:
        conditions += [ev.c.step_id == RUN_STEP, ev.c.event_type.in_(types)]
    return (
        sa.select(sa.func.max(sa.cast(ev.c.logical_attempt_id, sa.BigInteger)))
        .where(*conditions)
        .correlate(runs)
        .scalar_subquery()
    )


def _highest_allocated() -> sa.ScalarSelect[int | None]:
    """The highest logical attempt allocated to the correlated run (``store.attempt_for``): a
    re-execution is an attempt from its allocation on, before any event of it is recorded."""
    return (
        sa.select(sa.func.max(run_attempts.c.logical_attempt_id))
        .where(run_attempts.c.run_id == runs.c.run_id)
        .correlate(runs)
        .scalar_subquery()
    )


def _summary_query(
    before: dt.date,
) -> sa.Select[tuple[str, dt.date, dt.datetime, int, int | None, int | None, int | None]]:
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
            _highest_attempt(None).label("latest_attempt"),
            _highest_allocated().label("allocated_attempt"),
            _highest_attempt(_TERMINAL).label("terminal_attempt"),
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
        query = query.where(runs.c.run_id.in_(run_ids))
    return [
        RunSummary(
            run_id=row.run_id,
            run_epoch=row.run_epoch,
            created_at=as_utc(row.created_at),
            events=int(row.last_seq),
            latest_attempt=_highest(row.latest_attempt, row.allocated_attempt),
            terminal_attempt=None if row.terminal_attempt is None else int(row.terminal_attempt),
            last_position=None if row.position is None else int(row.position),
        )
        for row in conn.execute(query)
    ]


def _highest(*attempts: int | None) -> int | None:
    known = [int(a) for a in attempts if a is not None]
    return max(known) if known else None


def _newest_position(conn: Connection) -> int | None:
    if conn.dialect.name == "postgresql":
        return None  # a sequence: positions are never reused
    newest = conn.execute(sa.select(sa.func.max(run_events.c.position))).scalar_one()
    return None if newest is None else int(newest)


@dataclass(frozen=True)
class _BatchResult:
    runs: int
    events: int
    snapshots: int
    busy: tuple[str, ...]


def _lock_runs(conn: Connection, run_ids: Sequence[str]) -> list[str]:
    """Lock the run rows of ``run_ids`` that nobody else holds (in run id order); their ids.

    SKIP LOCKED: a held row is an append or a projector batch in flight. Waiting for it could close
    a cycle with a projector that holds other runs of this batch (it locks run rows in several
    statements); skipping it costs nothing but a later pass. A no-op lock on SQLite, whose
    writers are serialised.
    """
    query = (
        sa.select(runs.c.run_id)
        .where(runs.c.run_id.in_(run_ids))
        .order_by(runs.c.run_id)
        .with_for_update(skip_locked=True)
    )
    return [str(run_id) for run_id in conn.execute(query).scalars()]


def _delete_batch(conn: Connection, run_ids: Sequence[str], *, before: dt.date) -> _BatchResult:
    """Lock ``run_ids``, re-read them, then delete those still finished."""
    locked = _lock_runs(conn, run_ids)
    skipped = sorted(set(run_ids) - set(locked))
    busy: tuple[str, ...] = ()
    if skipped:  # held by another transaction, or deleted meanwhile by another pass
        found = conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id.in_(skipped))).scalars()
        busy = tuple(sorted(str(run_id) for run_id in found))
    # Read after the lock, in a statement of its own: on PostgreSQL (READ COMMITTED) it sees every
    # event committed before the lock was granted, and no append can add one until we commit.
    decision = decide(
        _summaries(conn, before=before, run_ids=locked) if locked else [],
        before=before,
        newest_position=_newest_position(conn),
    )
    if not decision.prune:
        return _BatchResult(0, 0, 0, busy)
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
    # After the run rows' lock (see the module docstring): a projector that locked a run row
    # before us has committed its snapshot by now, and one that comes later finds no run row
    # and writes none, so no snapshot outlives its run.
    snapshots = int(
        conn.execute(sa.delete(run_snapshots).where(run_snapshots.c.run_id.in_(ids))).rowcount or 0
    )
    conn.execute(sa.delete(run_attempts).where(run_attempts.c.run_id.in_(ids)))
    deleted = int(conn.execute(sa.delete(runs).where(runs.c.run_id.in_(ids))).rowcount or 0)
    return _BatchResult(deleted, events, snapshots, busy)


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
