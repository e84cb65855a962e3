"""Concurrent deliverers split the due messages and never send one message at the same time."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from metric_platform.db import create_db_engine, read_transaction, write_transaction
from metric_platform.ledger.delivery import RetryPolicy, deliver
from metric_platform.ledger.outbox import DELIVERED, PENDING, OutboxMessage, enqueue, status_counts
from metric_platform.ledger.schema import outbox
from metric_platform.ledger.sinks import DeliveredMessage

MESSAGES = 300
POLICY = RetryPolicy(
    max_attempts=20,
    base_delay=dt.timedelta(milliseconds=1),
    max_delay=dt.timedelta(milliseconds=20),
    lease=dt.timedelta(seconds=60),
)


class WatchingSink:
    """Fails 20% of sends (before any effect) and flags a key that is sent while already in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self.overlaps: list[str] = []
        self.calls: Counter[str] = Counter()
        self.effects: Counter[str] = Counter()
        self.by_thread: Counter[str] = Counter()
        self._rng = random.Random(11)

    def send(self, message: DeliveredMessage) -> None:
        with self._lock:
            if message.key in self._in_flight:
                self.overlaps.append(message.key)
            self._in_flight.add(message.key)
            self.calls[message.key] += 1
            self.by_thread[threading.current_thread().name] += 1
            fail = self._rng.random() < 0.2
            pause = self._rng.random() / 1000
        try:
            time.sleep(pause)  # widen the window in which another deliverer could pick it up
            if fail:
                raise ConnectionError("flaky")
            with self._lock:
                self.effects[message.key] += 1
        finally:
            with self._lock:
                self._in_flight.discard(message.key)


@pytest.fixture
def engine(platform_url: str) -> Iterator[Engine]:
    engine = create_db_engine(platform_url)
    yield engine
    engine.dispose()


def _enqueue_all(engine: Engine, now: dt.datetime) -> None:
    with write_transaction(engine) as conn:
        enqueue(conn, [OutboxMessage(f"m{i:04d}", "t", {"i": i}) for i in range(MESSAGES)], now=now)


def test_two_deliverers_never_send_one_message_concurrently(engine: Engine) -> None:
    _enqueue_all(engine, dt.datetime.now(dt.UTC))
    sink = WatchingSink()
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    deadline = time.monotonic() + 60

    def run() -> None:
        rng = random.Random(threading.current_thread().name)
        try:
            start.wait()
            while time.monotonic() < deadline:
                deliver(engine, sink, now=dt.datetime.now(dt.UTC), policy=POLICY, rng=rng, batch=5)
                with read_transaction(engine) as conn:
                    if status_counts(conn)[PENDING] == 0:
                        return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, name=f"deliverer-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sink.overlaps == []
    with read_transaction(engine) as conn:
        attempts = {key: n for key, n in conn.execute(sa.select(outbox.c.message_key, outbox.c.attempts))}
        assert status_counts(conn)[DELIVERED] == MESSAGES
    # Each send was its own claim, and a message that got through was never sent again.
    assert attempts == dict(sink.calls)
    assert set(sink.effects.values()) == {1} and len(sink.effects) == MESSAGES
    # Both deliverers did real work: claims interleaved instead of one waiting out the other.
    assert len(sink.by_thread) == 2 and min(sink.by_thread.values()) > MESSAGES // 10


def test_a_claim_skips_rows_another_deliverer_has_locked(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises claims with BEGIN IMMEDIATE: there are no row locks to skip")
    now = dt.datetime.now(dt.UTC)
    _enqueue_all(engine, now)
    held = {f"m{i:04d}" for i in range(0, MESSAGES, 3)}
    sink = WatchingSink()
    # Another deliverer is in the middle of claiming these rows (its transaction still open).
    with write_transaction(engine) as other:
        other.execute(sa.select(outbox.c.id).where(outbox.c.message_key.in_(held)).with_for_update()).all()
        started = time.monotonic()
        report = deliver(engine, sink, now=now, policy=POLICY, batch=MESSAGES)
        elapsed = time.monotonic() - started
    assert report.due == MESSAGES - len(held)
    assert not held & set(sink.calls)
    assert elapsed < 5  # it skipped the locked rows instead of waiting for them
    with read_transaction(engine) as conn:
        still_fresh = conn.execute(
            sa.select(sa.func.count()).where(outbox.c.message_key.in_(held), outbox.c.attempts == 0)
        ).scalar_one()
    assert still_fresh == len(held)
