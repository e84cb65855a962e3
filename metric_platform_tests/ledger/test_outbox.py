"""Enqueueing into the transactional outbox: once per key, timestamps in UTC on every dialect."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from metric_platform.db import create_db_engine, read_transaction, write_transaction
from metric_platform.ledger.outbox import (
    DEAD,
    DELIVERED,
    PENDING,
    OutboxMessage,
    as_utc,
    enqueue,
    status_counts,
)
from metric_platform.ledger.schema import outbox

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(platform_url: str) -> Iterator[Engine]:
    engine = create_db_engine(platform_url)
    yield engine
    engine.dispose()


def test_a_key_is_stored_once_however_often_it_is_enqueued(engine: Engine) -> None:
    first = [OutboxMessage("k1", "t", {"n": 1}), OutboxMessage("k2", "t", {"n": 2})]
    with write_transaction(engine) as conn:
        assert enqueue(conn, first, now=T0) == 2
        assert enqueue(conn, [], now=T0) == 0
    with write_transaction(engine) as conn:
        again = [OutboxMessage("k2", "t", {"n": 99}), OutboxMessage("k3", "t", {"n": 3})]
        assert enqueue(conn, again, now=T0) == 1
    with read_transaction(engine) as conn:
        rows = conn.execute(sa.select(outbox).order_by(outbox.c.message_key)).mappings().all()
        counts = status_counts(conn)
    assert [(r["message_key"], r["payload"], r["status"], r["attempts"]) for r in rows] == [
        ("k1", {"n": 1}, PENDING, 0),
        ("k2", {"n": 2}, PENDING, 0),  # the first payload wins
        ("k3", {"n": 3}, PENDING, 0),
    ]
    assert counts == {PENDING: 3, DELIVERED: 0, DEAD: 0}


def test_timestamps_in_other_zones_are_stored_as_the_same_instant(engine: Engine) -> None:
    # SQLite keeps a wall clock without its zone: 14:00+02:00 must be stored as 12:00 UTC, or it
    # would compare as two hours later than a UTC "now" of 12:00.
    plus_two = T0.astimezone(dt.timezone(dt.timedelta(hours=2)))
    with write_transaction(engine) as conn:
        enqueue(conn, [OutboxMessage("zoned", "t", {})], now=plus_two)
    with read_transaction(engine) as conn:
        due = (
            conn.execute(sa.select(outbox.c.message_key).where(outbox.c.next_attempt_at <= T0))
            .scalars()
            .all()
        )
        created = conn.execute(sa.select(outbox.c.created_at)).scalar_one()
    assert due == ["zoned"]
    assert as_utc(created) == T0
