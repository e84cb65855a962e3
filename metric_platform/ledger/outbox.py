"""The transactional outbox (seed 004 §4): messages for the secondary bus, written in the same
transaction as the state they describe, delivered later by a retrying worker."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    stmt = dialect_insert(conn, outbox).values(rows).on_conflict_do_nothing(index_elements=["message_key"])
    return int(conn.execute(stmt).rowcount or 0)
