"""The transactional outbox (seed 004 §4): messages for the secondary bus, written in the same
transaction as the state they describe, delivered later by a retrying worker
(:mod:`metric_platform.ledger.delivery`).

A message is ``pending`` until a deliverer records it ``delivered`` or ``dead`` (gave up; see
``delivery.dead_letters`` and ``delivery.requeue``). Timestamps are written in UTC: SQLite keeps a
timestamp's wall clock and drops its zone, so mixed zones would compare wrongly there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from metric_platform.db import dialect_insert
from metric_platform.ledger.events import JSONValue
from metric_platform.ledger.schema import outbox

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"


@dataclass(frozen=True)
class OutboxMessage:
    """One message. ``key`` is deterministic (e.g. the idempotency key of the event it announces),
    so enqueuing it twice stores it once and a consumer can deduplicate deliveries by it."""

    key: str
    topic: str
    payload: Mapping[str, JSONValue]


def enqueue(conn: Connection, messages: Sequence[OutboxMessage], *, now: dt.datetime) -> int:
    """Add ``messages`` inside the caller's write transaction; returns how many were new."""
    if not messages:
        return 0
    now = now.astimezone(dt.UTC) if now.tzinfo is not None else now
    rows = [
        {
            "message_key": m.key,
            "topic": m.topic,
            "payload": dict(m.payload),
            "created_at": now,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for m in messages
    ]
    # One statement per dialect, built once (compiling it per append cost more than running it);
    # the rows go as parameters. Counted from RETURNING: psycopg reports rowcount -1 for a
    # multi-row INSERT ... ON CONFLICT.
    return len(conn.execute(_insert_statement(conn), rows).all())


def _insert_statement(conn: Connection) -> Any:
    dialect = conn.dialect.name
    statement = _INSERTS.get(dialect)
    if statement is None:
        statement = (
            dialect_insert(conn, outbox)
            .on_conflict_do_nothing(index_elements=["message_key"])
            .returning(outbox.c.id)
        )
        _INSERTS[dialect] = statement
    return statement


_INSERTS: dict[str, Any] = {}


def as_utc(value: dt.datetime) -> dt.datetime:
    """A timestamp read back from the outbox, aware: SQLite returns UTC wall clocks without a zone."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def status_counts(conn: Connection) -> dict[str, int]:
    """How many messages are pending, delivered and dead (every status present, zeros included)."""
    rows = conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()
    counts = dict.fromkeys((PENDING, DELIVERED, DEAD), 0)
    counts.update({status: int(n) for status, n in rows})
    return counts
