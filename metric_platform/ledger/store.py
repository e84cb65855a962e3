"""The run_events store (seed 004 §1.1-1.3): append-only, gapless ``runSeq`` per run, deduplicated
by idempotency key, runs appended to in parallel.

One append, in one write transaction (``BEGIN IMMEDIATE`` on SQLite):

1. claim the run's next runSeq and lock its ``ledger_runs`` row in one statement (``UPDATE ...
   SET last_seq = last_seq + 1 ... RETURNING``), inserting the row first when the run is new
   (``INSERT ... ON CONFLICT DO NOTHING``, ``run_epoch`` = first day of the UTC month of ``now``).
   The row lock serialises one run's appends until commit, so runSeq is gapless; appends to
   different runs never wait for each other on PostgreSQL;
2. insert the event with ``ON CONFLICT (run_epoch, run_id, idempotency_key) DO NOTHING``, a
   global ``position`` (the ``ledger_event_position_seq`` sequence on PostgreSQL; ``max + 1`` on
   SQLite, whose writers are serialised) and ``tx_id`` (``pg_current_xact_id()`` on PostgreSQL, 0
   on SQLite: see ``projector.py``);
3. when the key was already recorded, hand the claimed runSeq back (still under the row lock, so
   nobody saw it) and compare payloads: the same semantic ``data`` (``events.semantic_payload``:
   canonical JSON without descriptive parts such as a StepCompleted's summary) → DUPLICATE, returning
   the ORIGINAL stored event (its runSeq, attempt ids, timestamps); different data →
   :class:`LedgerConflictError`. They are compared by the SHA-256 of that text, stored with the
   row (``semantic_sha256``) when it was appended, not by re-reading ``event_data``: PostgreSQL's
   JSONB normalises numbers (1e16 → 10000000000000000, -0.0 → 0.0), so the text of the stored
   data may differ from what was appended without the data having changed;
4. else enqueue the outbox messages in the same transaction: one ``ledger.event`` message
   announcing the event, plus the caller's.

Logical attempts (seed 004 §1.3: "assigned by Engine, monotonic per stepId per runId") are
allocated here too, by :meth:`RunEventStore.attempt_for`, in ``ledger_run_attempts``: the engine
(Dagster) numbers nothing that survives a run being deleted from its storage. A ledger run's
attempts are numbered under the same ``ledger_runs`` row lock its appends take, so concurrent
allocators for one run are serialised and never hand out a number twice.

Claiming before looking the key up costs a duplicate one extra statement and saves every new
event one: a statement is a large share of an append's cost with 16 writers on 2 cores.

``persisted_at`` is the appender's clock (UTC), not the database's: the same value goes to the
outbox row, both dialects behave alike, and tests can pin it. A DUPLICATE leaves the ledger as it
was and enqueues nothing, not even the caller's messages (the original append committed them,
under their deterministic keys).

``plan_version`` is stored beside the seed's columns, so an event read back recomputes its own
idempotency key and event id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from metric_platform import write_guard
from metric_platform.db import dialect_insert, read_transaction, write_transaction
from metric_platform.errors import InternalError, StorageError
from metric_platform.ledger import outbox as ledger_outbox
from metric_platform.ledger.errors import LedgerConflictError
from metric_platform.ledger.events import (
    EventIdentity,
    EventType,
    JSONValue,
    NewEvent,
    StoredEvent,
    semantic_payload,
)
from metric_platform.ledger.outbox import OutboxMessage
from metric_platform.ledger.partitions import month_start
from metric_platform.ledger.schema import position_sequence, run_attempts, run_events, runs

WRITE_KIND = "ledger.append"
ATTEMPT_WRITE_KIND = "ledger.attempt"
EVENT_TOPIC = "ledger.event"


class AppendOutcome(StrEnum):
    APPENDED = "appended"
    DUPLICATE = "duplicate"  # the key was already recorded with the same data: nothing written
    SUPPRESSED = "suppressed"  # a dry run: nothing touched


@dataclass(frozen=True)
class AppendResult:
    """``event`` is the stored event (the original one for a DUPLICATE), None when SUPPRESSED."""

    outcome: AppendOutcome
    event: StoredEvent | None


def event_message_key(idempotency_key: str) -> str:
    """The outbox key announcing an event. Prefixed with the topic because outbox keys are unique
    across topics, and callers key their own messages by the event's idempotency key too."""
    return f"{EVENT_TOPIC}:{idempotency_key}"


def event_message(stored: StoredEvent) -> OutboxMessage:
    """The ``ledger.event`` message announcing ``stored`` on the secondary bus (seed 004 §4)."""
    event = stored.event
    payload: dict[str, JSONValue] = {
        "runId": stored.run_id,
        "runSeq": stored.run_seq,
        "eventId": str(stored.event_id),
        "stepId": event.identity.step_id,
        "eventType": str(event.event_type),
        "data": dict(event.data),
    }
    return OutboxMessage(key=event_message_key(event.idempotency_key), topic=EVENT_TOPIC, payload=payload)


def stored_event_from_row(
    row: RowMapping | Mapping[str, Any], *, plan_version: str | None = None
) -> StoredEvent:
    """Rebuild a :class:`StoredEvent` from a ``ledger_run_events`` row mapping (``row._mapping``).

    Attempt ids are stored as strings (seed DDL) and parsed back; timestamps come back in UTC.
    ``plan_version`` overrides the stored one (rows written before it was stored read ``""``).
    """
    identity = EventIdentity(
        run_id=row["run_id"],
        step_id=row["step_id"],
        logical_attempt_id=int(row["logical_attempt_id"]),
        engine_attempt_id=int(row["engine_attempt_id"]),
        plan_version=str(row.get("plan_version") or "") if plan_version is None else plan_version,
    )
    event = NewEvent(
        identity=identity,
        event_type=EventType(row["event_type"]),
        data=row["event_data"],
        emitted_at=as_utc(row["emitted_at"]),
        adapter_version=row["adapter_version"],
        engine_run_ref=row["engine_run_ref"],
        caused_by_signal_id=row["caused_by_signal_id"],
        parent_event_id=row["parent_event_id"],
    )
    return StoredEvent(
        event=event,
        run_seq=int(row["run_seq"]),
        position=int(row["position"]),
        persisted_at=as_utc(row["persisted_at"]),
    )


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; a naive value (SQLite returns them) is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RunEventStore:
    """Appends and reads canonical run events in the platform database (migrated to head)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self._engine = engine
        self._clock = clock
        self._owns_engine = False

    @classmethod
    def open(cls, url: str, *, clock: Callable[[], dt.datetime] = _utc_now) -> RunEventStore:
        """Open (and migrate, unless in a dry run) the platform database at ``url``."""
        from metric_platform.platform_db import open_platform_db

        store = cls(open_platform_db(url), clock=clock)
        store._owns_engine = True
        return store

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        """Dispose of the engine if :meth:`open` created it."""
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> RunEventStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- writes ------------------------------------------------------------------------------

    def append(
        self, event: NewEvent, *, outbox: Sequence[OutboxMessage] = (), timeout_ms: int | None = None
    ) -> AppendResult:
        """Append ``event`` in a transaction of its own; ``timeout_ms`` bounds its lock waits (the
        write-latency budget, seed 004 §5). Under a dry run nothing is opened: SUPPRESSED."""
        if not write_guard.permit(WRITE_KIND):
            return AppendResult(AppendOutcome.SUPPRESSED, None)
        payload = _payload_text(event)
        with write_transaction(self._engine, timeout_ms=timeout_ms) as conn:
            return self._append_locked(conn, event, payload, outbox, self._clock())

    def append_in(
        self,
        conn: Connection,
        event: NewEvent,
        *,
        outbox: Sequence[OutboxMessage] = (),
        now: dt.datetime | None = None,
    ) -> AppendResult:
        """Append ``event`` inside the caller's write transaction (``db.write_transaction``), so that a
        result and the events announcing it commit together. Several appends may share one
        transaction; other appends to the same runs wait for their row locks until the caller
        commits. A transaction appending to several runs must take them in one global order
        (sorted run ids): two that do not can deadlock on PostgreSQL (one then fails with a
        StorageError)."""
        if not write_guard.permit(WRITE_KIND):
            return AppendResult(AppendOutcome.SUPPRESSED, None)
        return self._append_locked(conn, event, _payload_text(event), outbox, now or self._clock())

    def _append_locked(
        self,
        conn: Connection,
        event: NewEvent,
        payload: str,
        outbox: Sequence[OutboxMessage],
        now: dt.datetime,
    ) -> AppendResult:
        now = as_utc(now)
        identity = event.identity
        key = event.idempotency_key
        semantic_sha256 = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        run_epoch, run_seq = _claim_seq(conn, identity.run_id, now)
        emitted_at = as_utc(event.emitted_at)
        position = _insert_event(
            conn,
            event,
            run_epoch=run_epoch,
            run_seq=run_seq,
            emitted_at=emitted_at,
            now=now,
            semantic_sha256=semantic_sha256,
        )
        if position is None:
            # The key is already recorded. Give the claimed runSeq back before anything else (the
            # row lock is still ours, so nobody saw it): a caller of append_in that catches the
            # conflict and commits must not leave a gap.
            conn.execute(_RELEASE_SEQ, {"b_run_id": identity.run_id})
            found = (
                conn.execute(_FIND_KEY, {"run_epoch": run_epoch, "run_id": identity.run_id, "key": key})
                .mappings()
                .one()
            )
            # Compared as the event type defines it (events.semantic_payload): descriptive parts
            # of data, such as a StepCompleted's summary, may differ between retries. By hash, as
            # appended: the stored JSON may have been normalised (see the module docstring).
            if str(found["semantic_sha256"]) != semantic_sha256:
                raise LedgerConflictError(
                    run_id=identity.run_id,
                    step_id=identity.step_id,
                    event_type=str(event.event_type),
                    idempotency_key=key,
                    # The stored data as the database returns it: for the message only.
                    stored_payload=semantic_payload(found["event_type"], found["event_data"]),
                    new_payload=payload,
                )
            original = stored_event_from_row(found, plan_version=identity.plan_version)
            return AppendResult(AppendOutcome.DUPLICATE, original)
        stored = StoredEvent(
            event=replace(event, emitted_at=emitted_at), run_seq=run_seq, position=position, persisted_at=now
        )
        ledger_outbox.enqueue(conn, [event_message(stored), *outbox], now=now)
        return AppendResult(AppendOutcome.APPENDED, stored)

    # -- logical attempts (seed 004 §1.3) ------------------------------------------------------

    def attempt_for(self, run_id: str, engine_run_ref: str, *, timeout_ms: int | None = None) -> int:
        """The logical attempt of the engine run ``engine_run_ref`` (a Dagster run id) within the
        ledger run ``run_id`` (its root run id), allocated when first asked for and never changed
        after: 1 for the root run itself (``engine_run_ref == run_id``), else one more than the
        run's highest so far and at least 2 (a re-execution is never attempt 1, even when it is
        seen before its root). Every caller asking for one engine run gets the same number, each
        engine run a different one.

        ``timeout_ms`` bounds the wait for the run's lock. Allocate before appending, not inside a
        write transaction that appended to the same run: this would wait for that transaction's
        lock. Under a dry run nothing is written: the number already allocated, or the one that
        would be allocated now."""
        with read_transaction(self._engine) as conn:
            found = _find_attempt(conn, run_id, engine_run_ref)
            if found is not None:  # the common case: every step of a run asks again
                return found
            if not write_guard.permit(ATTEMPT_WRITE_KIND):
                return _next_attempt(conn, run_id, engine_run_ref)
        now = as_utc(self._clock())
        with write_transaction(self._engine, timeout_ms=timeout_ms) as conn:
            _lock_run(conn, run_id, now)
            # Under the lock: another allocator may have numbered this engine run meanwhile (on
            # PostgreSQL each READ COMMITTED statement sees what committed before it started).
            found = _find_attempt(conn, run_id, engine_run_ref)
            if found is not None:
                return found
            number = _next_attempt(conn, run_id, engine_run_ref)
            values = {
                "run_id": run_id,
                "engine_run_ref": engine_run_ref,
                "logical_attempt_id": number,
                "created_at": now,
            }
            try:
                conn.execute(sa.insert(run_attempts).values(values))
            except IntegrityError as exc:
                # Unreachable through this store (the run's lock serialises its allocators).
                detail = str(exc.orig).strip().splitlines()[0]
                msg = (
                    f"logical attempt {number} of engine run {engine_run_ref!r} in ledger run "
                    f"{run_id!r} collided with a row the allocator did not write: {detail}. Nothing "
                    "was written; find what writes ledger_run_attempts without RunEventStore."
                )
                raise StorageError(msg) from exc
            return number

    def attempts(self, run_id: str) -> dict[str, int]:
        """The engine runs of ``run_id`` and their logical attempts, in attempt order."""
        query = (
            sa.select(run_attempts.c.engine_run_ref, run_attempts.c.logical_attempt_id)
            .where(run_attempts.c.run_id == run_id)
            .order_by(run_attempts.c.logical_attempt_id)
        )
        with read_transaction(self._engine) as conn:
            return {str(ref): int(number) for ref, number in conn.execute(query)}

    # -- reads -------------------------------------------------------------------------------

    def events(self, run_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """The run's events with ``run_seq > after_seq``, in runSeq order (at most ``limit``)."""
        with read_transaction(self._engine) as conn:
            run_epoch = _run_epoch(conn, run_id)
            if run_epoch is None:
                return []
            query = (
                sa.select(run_events)
                .where(
                    run_events.c.run_epoch == run_epoch,
                    run_events.c.run_id == run_id,
                    run_events.c.run_seq > after_seq,
                )
                .order_by(run_events.c.run_seq)
            )
            if limit is not None:
                query = query.limit(limit)
            return [stored_event_from_row(row) for row in conn.execute(query).mappings()]

    def run_ids(self) -> list[str]:
        """Every run the ledger holds, sorted."""
        with read_transaction(self._engine) as conn:
            return [str(r) for r in conn.execute(sa.select(runs.c.run_id).order_by(runs.c.run_id)).scalars()]

    def get(self, run_id: str, idempotency_key: str) -> StoredEvent | None:
        """The event recorded under ``idempotency_key`` in ``run_id``, if any."""
        with read_transaction(self._engine) as conn:
            run_epoch = _run_epoch(conn, run_id)
            if run_epoch is None:
                return None
            row = (
                conn.execute(
                    sa.select(run_events).where(
                        run_events.c.run_epoch == run_epoch,
                        run_events.c.run_id == run_id,
                        run_events.c.idempotency_key == idempotency_key,
                    )
                )
                .mappings()
                .first()
            )
        return stored_event_from_row(row) if row is not None else None


# Built once: statement construction is a large share of an append's CPU.
_CLAIM_SEQ = (
    sa.update(runs)
    .where(runs.c.run_id == sa.bindparam("b_run_id"))
    .values(last_seq=runs.c.last_seq + 1)
    .returning(runs.c.run_epoch, runs.c.last_seq)
)
# Locks the run's row like an append's claim does, changing nothing: allocators of logical attempts
# and appends to the run wait for each other (FOR NO KEY UPDATE on PostgreSQL, so a projector's
# FOR KEY SHARE is not blocked).
_LOCK_RUN = (
    sa.update(runs)
    .where(runs.c.run_id == sa.bindparam("b_run_id"))
    .values(last_seq=runs.c.last_seq)
    .returning(runs.c.run_epoch)
)
_RELEASE_SEQ = (
    sa.update(runs).where(runs.c.run_id == sa.bindparam("b_run_id")).values(last_seq=runs.c.last_seq - 1)
)
_FIND_KEY = sa.select(run_events).where(
    run_events.c.run_epoch == sa.bindparam("run_epoch"),
    run_events.c.run_id == sa.bindparam("run_id"),
    run_events.c.idempotency_key == sa.bindparam("key"),
)
_ALLOCATED: dict[str, dict[str, Any]] = {
    # Position from the sequence; tx_id the id of the transaction writing the row: the projector
    # reads only rows whose transaction is older than every one still running (see projector.py).
    "postgresql": {
        "position": position_sequence.next_value(),
        "tx_id": sa.cast(sa.cast(sa.func.pg_current_xact_id(), sa.Text), sa.BigInteger),
    },
    # Writers are serialised by BEGIN IMMEDIATE, so max + 1 is unique and commits in order.
    "sqlite": {
        "position": sa.select(sa.func.coalesce(sa.func.max(run_events.c.position), 0) + 1).scalar_subquery(),
        "tx_id": 0,
    },
}


def _insert_statement(dialect: str, *, with_ref: bool) -> Any:
    insert = postgresql.insert(run_events) if dialect == "postgresql" else sqlite.insert(run_events)
    # A JSON column binds Python None as the JSON value null; an absent ref is SQL NULL instead.
    extra = {} if with_ref else {"engine_run_ref": sa.null()}
    return (
        insert.values(**_ALLOCATED[dialect], **extra)
        .on_conflict_do_nothing(index_elements=["run_epoch", "run_id", "idempotency_key"])
        .returning(run_events.c.position)
    )


_INSERT_EVENT = {
    (dialect, with_ref): _insert_statement(dialect, with_ref=with_ref)
    for dialect in _ALLOCATED
    for with_ref in (True, False)
}


def _claim_seq(conn: Connection, run_id: str, now: dt.datetime) -> tuple[dt.date, int]:
    """Lock the run's row and take its next runSeq, creating the row when the run is new;
    returns (run_epoch, run_seq)."""
    row = conn.execute(_CLAIM_SEQ, {"b_run_id": run_id}).first()
    if row is None:
        _create_run(conn, run_id, now)
        row = conn.execute(_CLAIM_SEQ, {"b_run_id": run_id}).one()
    return row.run_epoch, int(row.last_seq)


def _lock_run(conn: Connection, run_id: str, now: dt.datetime) -> None:
    """Lock the run's row until commit, creating it when the run is new; its runSeq is untouched."""
    if conn.execute(_LOCK_RUN, {"b_run_id": run_id}).first() is None:
        _create_run(conn, run_id, now)
        conn.execute(_LOCK_RUN, {"b_run_id": run_id}).one()


def _create_run(conn: Connection, run_id: str, now: dt.datetime) -> None:
    """Insert the run's ``ledger_runs`` row (``run_epoch`` from ``now``) unless it exists already."""
    # No conflict target: a concurrent creator may collide on the primary key or on
    # (run_id, run_epoch), and PostgreSQL only swallows a collision on an arbiter index.
    new = dialect_insert(conn, runs).values(
        run_id=run_id, run_epoch=month_start(now.date()), last_seq=0, created_at=now
    )
    conn.execute(new.on_conflict_do_nothing())


def _find_attempt(conn: Connection, run_id: str, engine_run_ref: str) -> int | None:
    number = conn.execute(
        sa.select(run_attempts.c.logical_attempt_id).where(
            run_attempts.c.run_id == run_id, run_attempts.c.engine_run_ref == engine_run_ref
        )
    ).scalar_one_or_none()
    return None if number is None else int(number)


def _next_attempt(conn: Connection, run_id: str, engine_run_ref: str) -> int:
    """The number a new engine run of ``run_id`` gets: 1 is the root run's alone."""
    if engine_run_ref == run_id:
        return 1
    highest = conn.execute(
        sa.select(sa.func.max(run_attempts.c.logical_attempt_id)).where(run_attempts.c.run_id == run_id)
    ).scalar_one_or_none()
    return max(2, int(highest or 0) + 1)


def event_row(
    event: NewEvent, *, run_epoch: dt.date, run_seq: int, persisted_at: dt.datetime
) -> dict[str, Any]:
    """The ``ledger_run_events`` values of ``event`` at (``run_epoch``, ``run_seq``), without the
    allocated ``position`` and ``tx_id``: what an append writes, and what tests and benchmarks that
    write rows around the store (gaps, bulk loads, baselines) must write too."""
    identity = event.identity
    return {
        "run_epoch": run_epoch,
        "run_id": identity.run_id,
        "run_seq": run_seq,
        "event_id": event.event_id,
        "step_id": identity.step_id,
        "engine_attempt_id": str(identity.engine_attempt_id),
        "logical_attempt_id": str(identity.logical_attempt_id),
        "plan_version": identity.plan_version,
        "event_type": str(event.event_type),
        "event_data": dict(event.data),
        "idempotency_key": event.idempotency_key,
        "semantic_sha256": hashlib.sha256(event.payload_text.encode("utf-8")).hexdigest(),
        "emitted_at": as_utc(event.emitted_at),
        "persisted_at": persisted_at,
        "adapter_version": event.adapter_version,
        "engine_run_ref": None if event.engine_run_ref is None else dict(event.engine_run_ref),
        "caused_by_signal_id": event.caused_by_signal_id,
        "parent_event_id": event.parent_event_id,
    }


def _insert_event(
    conn: Connection,
    event: NewEvent,
    *,
    run_epoch: dt.date,
    run_seq: int,
    emitted_at: dt.datetime,
    now: dt.datetime,
    semantic_sha256: str,
) -> int | None:
    """Insert the event row; its position, or None when its idempotency key is already recorded."""
    identity = event.identity
    values = event_row(event, run_epoch=run_epoch, run_seq=run_seq, persisted_at=now)
    values["emitted_at"] = emitted_at
    values["semantic_sha256"] = semantic_sha256
    if event.engine_run_ref is None:
        del values["engine_run_ref"]  # SQL NULL, bound by the statement (see _insert_statement)
    statement = _INSERT_EVENT.get((conn.dialect.name, event.engine_run_ref is not None))
    if statement is None:
        msg = f"platform databases are SQLite or PostgreSQL, not {conn.dialect.name}; change the URL"
        raise StorageError(msg)
    try:
        position = conn.execute(statement, values).scalar_one_or_none()
    except IntegrityError as exc:
        # Unreachable through this store (the run row lock serialises the allocator, and a key
        # collision is swallowed above): a row written around it is a corruption to report, not a
        # traceback to leak.
        detail = str(exc.orig).strip().splitlines()[0]
        msg = (
            f"ledger append to run {identity.run_id!r} (runSeq {run_seq}, key {event.idempotency_key}) "
            f"collided with a row the ledger's allocator did not write: {detail}. Nothing was "
            "written; find what writes ledger_run_events without RunEventStore."
        )
        raise StorageError(msg) from exc
    return None if position is None else int(position)


def _run_epoch(conn: Connection, run_id: str) -> dt.date | None:
    epoch: dt.date | None = conn.execute(
        sa.select(runs.c.run_epoch).where(runs.c.run_id == run_id)
    ).scalar_one_or_none()
    return epoch


def _payload_text(event: NewEvent) -> str:
    try:
        return event.payload_text
    except (TypeError, ValueError) as exc:
        msg = (
            f"the data of {event.event_type} for run {event.identity.run_id!r}, step "
            f"{event.identity.step_id!r} is not JSON ({exc}); put only JSON values "
            "(and ArtifactRef.to_json()) in an event's data"
        )
        raise InternalError(msg) from exc
