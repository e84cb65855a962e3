"""The snapshot projector (seed 004 §1.4-1.5): folds the ledger into ``ledger_run_snapshots``.

Exactly once across crashes
---------------------------
A snapshot row carries its run's progress (``last_event_seq``); the projector's watermark
(``ledger_projector_state``) says how far discovery has read. Both are written in ONE transaction
with the alerts it raised (outbox), so a crash at any point loses the whole batch or nothing, and
the restarted projector resumes from a consistent pair. Re-reading an event is harmless anyway:
an event at or below its run's ``last_event_seq`` is skipped (seed rule 4).

Discovery that never skips a late commit
----------------------------------------
Events are found by their global order ``(tx_id, position)`` after the watermark. Reading "rows
after the last position seen" is not enough on PostgreSQL: positions come from a sequence when a
row is *written*, and a transaction that wrote position 10 may commit after another one that wrote
11 was read; a watermark at 11 would skip 10 forever (Marten #1629 / #3321). So:

- Every transaction still able to commit has a transaction id ``>= pg_snapshot_xmin(
  pg_current_snapshot())``, and a row's ``tx_id`` is its writer's id. Rows with ``tx_id < xmin``
  are *final*: committed and visible, or never to exist. The watermark only ever passes final
  rows, in ``(tx_id, position)`` order, and xmin is read before the rows, so no later commit
  can land behind it.
- Rows that are visible but not yet final (a newer transaction committed while an older one is
  still open) are applied too, but the watermark stays below them; the next poll re-reads them
  from the watermark and skips them per run by ``last_event_seq``. So an open transaction (its
  events invisible) never stops other runs from projecting, and is never passed: its events are
  applied, in order, when it commits. Once a batch meets a non-final row the watermark is frozen
  for the rest of the poll (a transaction open during that read may still commit rows behind the
  cursor). xmin is cluster-wide: a long transaction anywhere holds the watermark back, which costs
  re-reads, never events.
- On SQLite writers are serialised (``BEGIN IMMEDIATE``), so commit order is position order:
  ``tx_id`` is 0, every visible row is final, and the watermark is the position.

Within a run, the appender's row lock makes commit order runSeq order, so a visible run never has
a hole that a pending transaction will fill.

Gaps halt one run only
----------------------
A run's events are applied in runSeq order from ``last_event_seq + 1``. When the next stored event
is not that one, the run halts (``halted_at_seq`` = the expected seq), alert
``PROJECTOR_GAP_DETECTED`` (P1) is raised, and the global watermark still advances. Each poll
re-reads every halted run directly by run id until the gap closes, then it resumes in order.
A run whose batch is not contiguous is also re-read by id before being declared halted: the
missing event may be behind the cursor (e.g. a gap closed by a late insert).

Lag
---
``lag_seconds`` is the age, at the start of the poll, of the oldest visible event that was not
yet applied then: those the poll applied and those still waiting in halted runs. Above
``lag_threshold_s`` alert ``PROJECTOR_LAG_HIGH`` (P2) is raised.

Retention
---------
Retention (``retention.py``) deletes a finished run's events, snapshot row and run row together.
A snapshot is only written for a run whose ``ledger_runs`` row the batch holds (FOR KEY SHARE,
taken before the snapshot row, the order retention locks them in): a snapshot written for a run
pruned after its events were read would outlive it, and a later run of the same id, numbered from
runSeq 1 again, would see its first events skipped. A run pruned and re-created between the read
and the lock is recognised (its rows read are gone) and read again by run id.

One projector per platform database: ``name`` keys the watermark row, whose lock serialises
concurrent pollers of the same name; snapshot rows are locked too and never moved backwards.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from metric_platform import write_guard
from metric_platform.db import dialect_insert, read_transaction, write_transaction
from metric_platform.errors import StorageError, UserError
from metric_platform.ledger import outbox as ledger_outbox
from metric_platform.ledger.alerts import ProjectorAlert
from metric_platform.ledger.events import StoredEvent
from metric_platform.ledger.projection import RunSnapshot, incremental_project, split_at_gap
from metric_platform.ledger.schema import projector_state, run_events, run_snapshots, runs
from metric_platform.ledger.store import stored_event_from_row

log = logging.getLogger(__name__)

WRITE_KIND = "ledger.project"


@dataclass(frozen=True, order=True)
class Watermark:
    """The last ``(tx_id, position)`` discovery has consumed for good."""

    tx: int = 0
    position: int = 0


@dataclass(frozen=True)
class HaltedRun:
    run_id: str
    expected_seq: int
    found_seq: int


@dataclass(frozen=True)
class ProjectionReport:
    """What one :meth:`Projector.poll` did. ``runs_updated`` and ``halted_runs`` are sorted by run."""

    applied: int
    runs_updated: tuple[str, ...]
    halted_runs: tuple[HaltedRun, ...]
    alerts: tuple[ProjectorAlert, ...]
    watermark: Watermark
    lag_seconds: float
    dry_run: bool = False


@dataclass
class _RunState:
    snapshot: RunSnapshot
    halted: HaltedRun | None


@dataclass
class _Poll:
    """Scratch state of one poll (mutable; never escapes the poll)."""

    now: dt.datetime
    dry: bool
    watermark: Watermark
    cursor: Watermark
    high: Watermark
    frozen: bool = False
    applied: int = 0
    oldest_pending: dt.datetime | None = None
    lag: float = 0.0
    # Runs advanced since the last write (a dry run never writes: the whole poll's).
    touched: dict[str, _RunState] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)  # runs of the current batch whose row must be written
    updated: set[str] = field(default_factory=set)
    halted: dict[str, HaltedRun] = field(default_factory=dict)
    alerts: list[ProjectorAlert] = field(default_factory=list)
    alerts_written: int = 0

    def pending(self, events: Iterable[StoredEvent]) -> None:
        for event in events:
            if self.oldest_pending is None or event.persisted_at < self.oldest_pending:
                self.oldest_pending = event.persisted_at


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# Events per transaction. Each batch decodes and re-encodes the snapshot of every run it touches,
# so with many interleaved runs small batches cost most of a poll (measured: 20,000 events over
# 100 runs took 17x the pure fold in batches of 1,000, 6x in one batch); 5,000 events commit in
# about a second, within the lag SLA.
DEFAULT_BATCH_SIZE = 5000


class Projector:
    """Polls the ledger and keeps ``ledger_run_snapshots`` current (see the module docstring).

    ``before_commit`` is a fault-injection seam for tests: it runs inside each batch's
    transaction after the snapshots, the watermark and the alerts were written, before the commit.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        name: str = "default",
        clock: Callable[[], dt.datetime] = _utc_now,
        lag_threshold_s: float = 5.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        if not 0 < len(name) <= 64:
            msg = f"projector name {name!r} must be 1 to 64 characters long"
            raise UserError(msg)
        if batch_size < 1:
            msg = f"batch_size must be at least 1, not {batch_size}"
            raise UserError(msg)
        self._engine = engine
        self._name = name
        self._clock = clock
        self._lag_threshold_s = lag_threshold_s
        self._batch_size = batch_size
        self._before_commit = before_commit
        self._postgres = engine.dialect.name == "postgresql"

    @property
    def name(self) -> str:
        return self._name

    def poll(self) -> ProjectionReport:
        """Apply every event visible when the poll starts, ``batch_size`` events per transaction.

        Under a dry run the same work is done on read transactions and nothing is written.
        """
        now = self._clock()
        if now.tzinfo is None:
            msg = "the projector's clock must return timezone-aware datetimes (e.g. datetime.now(UTC))"
            raise UserError(msg)
        dry = not write_guard.permit(WRITE_KIND)
        poll: _Poll | None = None
        while True:
            with self._transaction(dry) as conn:
                watermark = self._lock_state(conn, dry, now)
                if poll is None:
                    high = self._high_mark(conn)
                    poll = _Poll(now=now, dry=dry, watermark=watermark, cursor=watermark, high=high)
                    self._resume_halted(conn, poll)
                else:
                    # Another poller of this name may have run between our batches; either
                    # watermark is safe on its own, so the higher one is too.
                    poll.watermark = max(poll.watermark, watermark)
                full = self._discover(conn, poll)
                last = not full or poll.cursor >= poll.high
                if last:
                    self._measure_lag(poll)
                self._write(conn, poll)
            if last:
                return self._report(poll)

    # -- transactions and state ----------------------------------------------------------------

    def _transaction(self, dry: bool) -> AbstractContextManager[Connection]:
        return read_transaction(self._engine) if dry else write_transaction(self._engine)

    def _lock_state(self, conn: Connection, dry: bool, now: dt.datetime) -> Watermark:
        if not dry:
            new = dialect_insert(conn, projector_state).values(
                projector=self._name, watermark_tx=0, watermark_position=0, updated_at=now
            )
            conn.execute(new.on_conflict_do_nothing(index_elements=["projector"]))
        query = sa.select(projector_state.c.watermark_tx, projector_state.c.watermark_position).where(
            projector_state.c.projector == self._name
        )
        row = conn.execute(query if dry else query.with_for_update()).first()
        return Watermark(int(row.watermark_tx), int(row.watermark_position)) if row else Watermark()

    def _high_mark(self, conn: Connection) -> Watermark:
        row = conn.execute(
            sa.select(run_events.c.tx_id, run_events.c.position)
            .order_by(run_events.c.tx_id.desc(), run_events.c.position.desc())
            .limit(1)
        ).first()
        return Watermark(int(row.tx_id), int(row.position)) if row else Watermark()

    def _xmin(self, conn: Connection) -> int | None:
        """Below this transaction id every row is final (PostgreSQL); None: every visible row is."""
        if not self._postgres:
            return None
        query = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        return int(conn.exec_driver_sql(query).scalar_one())

    # -- halted runs -----------------------------------------------------------------------------

    def _resume_halted(self, conn: Connection, poll: _Poll) -> None:
        query = (
            sa.select(run_snapshots.c.run_id)
            .where(run_snapshots.c.halted_at_seq.is_not(None))
            .order_by(run_snapshots.c.run_id)
        )
        halted = [str(run_id) for run_id in conn.execute(query).scalars()]
        # Locked through _load, run row first: see _lock_runs.
        states = self._load(conn, poll, halted)
        for run_id in sorted(states):
            state = states[run_id]
            if state.halted is not None:  # else its gap closed, or its run was re-created, meanwhile
                self._advance(conn, poll, state, self._read_run(conn, state.snapshot), direct=True)

    # -- discovery -----------------------------------------------------------------------------

    def _discover(self, conn: Connection, poll: _Poll) -> bool:
        """Read and apply one batch after the cursor; True when the batch was full."""
        xmin = self._xmin(conn)  # before the rows: see the module docstring
        after = sa.tuple_(run_events.c.tx_id, run_events.c.position) > sa.tuple_(
            sa.literal(poll.cursor.tx, sa.BigInteger), sa.literal(poll.cursor.position, sa.BigInteger)
        )
        rows = (
            conn.execute(
                sa.select(run_events)
                .where(after)
                .order_by(run_events.c.tx_id, run_events.c.position)
                .limit(self._batch_size)
            )
            .mappings()
            .all()
        )
        if not rows:
            return False
        by_run: dict[str, list[StoredEvent]] = {}
        for row in rows:
            by_run.setdefault(str(row["run_id"]), []).append(stored_event_from_row(row))
        # A run missing from ``states`` was pruned since its rows were read: no snapshot for it.
        states = self._load(conn, poll, sorted(by_run))
        recreated = self._recreated(conn, states, by_run)
        for run_id in sorted(states):
            if run_id in recreated:
                events = self._read_run(conn, states[run_id].snapshot)
                self._advance(conn, poll, states[run_id], events, direct=True)
            else:
                self._advance(conn, poll, states[run_id], by_run[run_id], direct=False)
        marks = [Watermark(int(r["tx_id"]), int(r["position"])) for r in rows]
        # Rows are in (tx_id, position) order, so the final ones (tx_id < xmin) come first.
        final = [m for m in marks if xmin is None or m.tx < xmin]
        if final and not poll.frozen:
            poll.watermark = max(poll.watermark, final[-1])
        if len(final) < len(marks):
            poll.frozen = True
        poll.cursor = marks[-1]
        return len(rows) == self._batch_size

    def _advance(
        self, conn: Connection, poll: _Poll, state: _RunState, events: Sequence[StoredEvent], *, direct: bool
    ) -> None:
        """Apply what can be applied of one run's ``events``; halt or resume the run.

        ``direct``: ``events`` are everything stored after the snapshot (read by run id).
        """
        run_id = state.snapshot.run_id
        split = split_at_gap(state.snapshot.last_event_seq, events)
        if not direct and (state.halted is not None or split.gap is not None):
            # The missing event may sit behind the cursor: read the run itself before halting.
            events = self._read_run(conn, state.snapshot)
            split = split_at_gap(state.snapshot.last_event_seq, events)
        poll.touched[run_id] = state
        if split.ready:
            poll.pending(split.ready)
            state.snapshot = incremental_project(state.snapshot, split.ready)
            poll.applied += len(split.ready)
            poll.dirty.add(run_id)
        halted = None
        if split.gap is not None:
            halted = HaltedRun(run_id, split.gap.expected, split.gap.found)
            poll.pending(e for e in events if e.run_seq > split.gap.expected)
            poll.halted[run_id] = halted
        else:
            poll.halted.pop(run_id, None)
        before = None if state.halted is None else state.halted.expected_seq
        if (None if halted is None else halted.expected_seq) != before:
            poll.dirty.add(run_id)
            if halted is not None:
                poll.alerts.append(
                    ProjectorAlert.gap(
                        projector=self._name,
                        run_id=run_id,
                        expected=halted.expected_seq,
                        found=halted.found_seq,
                        detected_at=poll.now,
                    )
                )
        state.halted = halted

    def _read_run(self, conn: Connection, snapshot: RunSnapshot) -> list[StoredEvent]:
        """Every stored event of the run after its snapshot, in runSeq order."""
        run_id = snapshot.run_id
        epoch = conn.execute(sa.select(runs.c.run_epoch).where(runs.c.run_id == run_id)).scalar_one_or_none()
        if epoch is None:
            return []
        rows = conn.execute(
            sa.select(run_events)
            .where(
                run_events.c.run_epoch == epoch,  # the partition key: one partition is read
                run_events.c.run_id == run_id,
                run_events.c.run_seq > snapshot.last_event_seq,
            )
            .order_by(run_events.c.run_seq)
        ).mappings()
        return [stored_event_from_row(r) for r in rows]

    # -- snapshot rows -------------------------------------------------------------------------

    def _load(self, conn: Connection, poll: _Poll, run_ids: Sequence[str]) -> dict[str, _RunState]:
        """The state of each of ``run_ids`` (sorted) whose run row still exists, with its run row
        and then its snapshot row locked (see :meth:`_lock_runs`); pruned runs are left out."""
        live = self._lock_runs(conn, poll, run_ids)
        states: dict[str, _RunState] = {}
        for chunk in _chunks(live):
            query = (
                sa.select(run_snapshots)
                .where(run_snapshots.c.run_id.in_(chunk))
                .order_by(run_snapshots.c.run_id)
            )
            for row in conn.execute(query if poll.dry else query.with_for_update()).mappings():
                states[str(row["run_id"])] = _state_from_row(row)
        for run_id in live:
            if run_id in poll.touched:
                states[run_id] = poll.touched[run_id]  # not written yet (or never: a dry run)
            states.setdefault(run_id, _RunState(RunSnapshot.initial(run_id), None))
        return states

    def _lock_runs(self, conn: Connection, poll: _Poll, run_ids: Sequence[str]) -> list[str]:
        """Lock the ``ledger_runs`` rows of ``run_ids`` (sorted) FOR KEY SHARE; those that exist.

        A snapshot is written only for a run whose row this transaction holds: retention deletes
        a run's events, snapshot and run row together, and a snapshot written for a pruned run
        would outlive it and make the projector skip the first events of a later run of the same
        id. KEY SHARE does not conflict with an append's row update, only with retention's
        FOR UPDATE: a run row retention holds is waited for (then found gone), and retention
        skips a run row the projector holds. Run rows are locked before snapshot rows, the order
        retention takes them in. A no-op lock on SQLite, whose writers are serialised.
        """
        live: list[str] = []
        for chunk in _chunks(run_ids):
            query = sa.select(runs.c.run_id).where(runs.c.run_id.in_(chunk)).order_by(runs.c.run_id)
            if not poll.dry:
                query = query.with_for_update(read=True, key_share=True)
            live.extend(str(run_id) for run_id in conn.execute(query).scalars())
        return live

    def _recreated(
        self, conn: Connection, states: dict[str, _RunState], by_run: dict[str, list[StoredEvent]]
    ) -> set[str]:
        """Runs whose rows read by discovery are gone although the run row exists: pruned and
        created anew (runSeq from 1) between that read and :meth:`_lock_runs` (PostgreSQL only;
        SQLite's serialised writers cannot interleave). Such a run has no snapshot row (retention
        deleted it), and its new events must be read by run id, not folded from the old ones.
        """
        if not self._postgres:
            return set()
        # A run pruned and re-created lost its snapshot row too: it is at its initial state.
        firsts = {
            run_id: by_run[run_id][0].position
            for run_id, state in states.items()
            if state.snapshot.last_event_seq == 0
        }
        found: set[int] = set()
        for chunk in _chunks(sorted(firsts.values())):
            query = sa.select(run_events.c.position).where(run_events.c.position.in_(chunk))
            found.update(int(position) for position in conn.execute(query).scalars())
        return {run_id for run_id, position in firsts.items() if position not in found}

    def _measure_lag(self, poll: _Poll) -> None:
        if poll.oldest_pending is not None:
            poll.lag = max(0.0, (poll.now - poll.oldest_pending).total_seconds())
        if poll.lag > self._lag_threshold_s:
            poll.alerts.append(
                ProjectorAlert.lag(
                    projector=self._name,
                    lag_seconds=poll.lag,
                    threshold_s=self._lag_threshold_s,
                    detected_at=poll.now,
                )
            )

    def _write(self, conn: Connection, poll: _Poll) -> None:
        """Persist the batch: snapshots, watermark and alerts, in the caller's transaction."""
        alerts = poll.alerts[poll.alerts_written :]
        poll.alerts_written = len(poll.alerts)
        for alert in alerts:
            log.warning("%s (%s): %s", alert.code.value, alert.severity.value, alert.message)
        poll.updated |= poll.dirty
        if poll.dry:
            poll.dirty.clear()
            return
        rows = [_row(poll.touched[run_id], poll.now) for run_id in sorted(poll.dirty)]
        for chunk in _chunks(rows):
            stmt = dialect_insert(conn, run_snapshots).values(chunk)
            stmt = stmt.on_conflict_do_update(
                index_elements=["run_id"],
                set_={c: stmt.excluded[c] for c in chunk[0] if c != "run_id"},
                # Never move a run backwards, whatever another projector wrote meanwhile.
                where=run_snapshots.c.last_event_seq <= stmt.excluded.last_event_seq,
            )
            conn.execute(stmt)
        conn.execute(
            sa.update(projector_state)
            .where(projector_state.c.projector == self._name)
            .values(
                watermark_tx=poll.watermark.tx,
                watermark_position=poll.watermark.position,
                updated_at=poll.now,
            )
        )
        ledger_outbox.enqueue(conn, [a.to_outbox() for a in alerts], now=poll.now)
        poll.dirty.clear()
        poll.touched.clear()
        if self._before_commit is not None:
            self._before_commit()

    def _report(self, poll: _Poll) -> ProjectionReport:
        return ProjectionReport(
            applied=poll.applied,
            runs_updated=tuple(sorted(poll.updated)),
            halted_runs=tuple(poll.halted[k] for k in sorted(poll.halted)),
            alerts=tuple(poll.alerts),
            watermark=poll.watermark,
            lag_seconds=poll.lag,
            dry_run=poll.dry,
        )


_CHUNK = 500  # rows per statement: far below either dialect's bound-parameter limit


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _state_from_row(row: Any) -> _RunState:
    run_id = str(row["run_id"])
    try:
        snapshot = RunSnapshot.from_json(row["snapshot"])
    except ValueError as exc:
        # Derived data: rebuild it from the log rather than stop the run's projection.
        log.error("run %r: stored snapshot unreadable (%s); rebuilding it from its events", run_id, exc)
        return _RunState(RunSnapshot.initial(run_id), None)
    halted_at = row["halted_at_seq"]
    return _RunState(
        snapshot, None if halted_at is None else HaltedRun(run_id, int(halted_at), int(halted_at))
    )


def _row(state: _RunState, now: dt.datetime) -> dict[str, Any]:
    snap = state.snapshot
    return {
        "run_id": snap.run_id,
        "status": snap.status.value,
        "last_event_seq": snap.last_event_seq,
        "events_applied": snap.events_applied,
        "halted_at_seq": None if state.halted is None else state.halted.expected_seq,
        "snapshot": snap.to_json(),
        "projected_at": now,
    }


def load_snapshot(engine: Engine, run_id: str) -> RunSnapshot | None:
    """The stored snapshot of ``run_id``, or None when the projector has not seen the run."""
    with read_transaction(engine) as conn:
        raw = conn.execute(
            sa.select(run_snapshots.c.snapshot).where(run_snapshots.c.run_id == run_id)
        ).scalar_one_or_none()
    if raw is None:
        return None
    try:
        return RunSnapshot.from_json(raw)
    except ValueError as exc:
        msg = (
            f"the stored snapshot of run {run_id!r} is unreadable ({exc}); "
            "the next projector poll rebuilds it from the run's events"
        )
        raise StorageError(msg) from exc
