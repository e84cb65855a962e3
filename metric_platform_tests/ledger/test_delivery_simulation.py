"""Delivery against an unreliable bus, driven by a simulated clock until nothing is left to do.

The sink fails 30% of its calls (half of those *after* the consumer applied the message: a lost
acknowledgement) and every call during a full outage window; once, the deliverer crashes in the
middle of a batch. Whatever happens, every message ends delivered or dead-lettered with a reason,
the deduplicating consumer applies each message exactly once, and every retry waited a capped,
jittered backoff.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from metric_platform.db import create_db_engine, read_transaction, write_transaction
from metric_platform.ledger.delivery import RetryPolicy, dead_letters, deliver
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
from metric_platform.ledger.sinks import DeliveredMessage

T0 = dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC)
MESSAGES = 160
ENQUEUE_EVERY = dt.timedelta(seconds=3)  # messages arrive over 8 minutes
OUTAGE = (T0 + dt.timedelta(seconds=150), T0 + dt.timedelta(seconds=330))
POLICY = RetryPolicy(
    max_attempts=6,
    base_delay=dt.timedelta(seconds=1),
    max_delay=dt.timedelta(seconds=12),
    lease=dt.timedelta(seconds=90),
)
CRASH_ON_CALL = 40


class SimulatedCrash(BaseException):
    """The deliverer's process dies mid-batch."""


@dataclass
class Consumer:
    """The downstream side effect: a running total, deduplicated by message key."""

    applied: Counter[str] = field(default_factory=Counter)  # per key, after dedupe (must stay 1)
    received: Counter[str] = field(default_factory=Counter)  # per key, before dedupe
    total: int = 0

    def consume(self, message: DeliveredMessage) -> None:
        self.received[message.key] += 1
        if message.key in self.applied:
            return
        self.applied[message.key] += 1
        self.total += int(message.payload["amount"])


@dataclass
class FlakyBus:
    clock: list[dt.datetime]
    consumer: Consumer
    rng: random.Random = field(default_factory=lambda: random.Random(20260301))
    calls: Counter[str] = field(default_factory=Counter)
    lost_acks: int = 0
    crashed: bool = False

    def send(self, message: DeliveredMessage) -> None:
        self.calls[message.key] += 1
        now = self.clock[0]
        if OUTAGE[0] <= now < OUTAGE[1]:
            raise ConnectionError("bus outage: connection refused")
        if sum(self.calls.values()) == CRASH_ON_CALL and not self.crashed:
            self.crashed = True
            self.consumer.consume(message)
            raise SimulatedCrash
        roll = self.rng.random()
        if roll < 0.15:
            raise TimeoutError("bus did not answer")
        self.consumer.consume(message)
        if roll < 0.30:
            self.lost_acks += 1
            raise TimeoutError("acknowledgement lost")


@pytest.fixture
def engine(platform_url: str) -> Iterator[Engine]:
    engine = create_db_engine(platform_url)
    yield engine
    engine.dispose()


def _drive(engine: Engine, bus: FlakyBus) -> list[float]:
    """Run passes, advancing the simulated clock to the next due time, until nothing is pending.
    Returns each retry's delay as a fraction of its backoff ceiling (asserting it is within it)."""
    rng = random.Random(7)
    attempts_seen: dict[str, int] = {}
    delay_ratios: list[float] = []
    for _ in range(5_000):
        now = bus.clock[0]
        # A crash leaves the claimed batch leased: it is re-sent once the lease expires.
        with contextlib.suppress(SimulatedCrash):
            deliver(engine, bus, now=now, policy=POLICY, rng=rng, batch=8)
        with read_transaction(engine) as conn:
            rows = conn.execute(
                sa.select(outbox.c.message_key, outbox.c.attempts, outbox.c.next_attempt_at, outbox.c.status)
            ).all()
        for key, attempts, next_at, status in rows:
            retried_now = status == PENDING and attempts > attempts_seen.get(key, 0)
            if retried_now and as_utc(next_at) - now != POLICY.lease:
                delay = as_utc(next_at) - now
                ceiling = POLICY.ceiling(attempts)
                assert dt.timedelta(0) <= delay <= ceiling <= POLICY.max_delay
                delay_ratios.append(delay / ceiling)
            attempts_seen[key] = attempts
        pending = [as_utc(next_at) for _, _, next_at, status in rows if status == PENDING]
        if not pending:
            return delay_ratios
        bus.clock[0] = max(now, min(pending))
    pytest.fail("delivery did not converge in 5,000 passes")


def test_every_message_ends_delivered_or_dead_and_is_applied_once(engine: Engine) -> None:
    amounts = {f"msg-{i:03d}": i * 7 + 1 for i in range(MESSAGES)}
    with write_transaction(engine) as conn:
        for i, (key, amount) in enumerate(amounts.items()):
            enqueue(conn, [OutboxMessage(key, "sim", {"amount": amount})], now=T0 + i * ENQUEUE_EVERY)
    consumer = Consumer()
    bus = FlakyBus([T0], consumer)
    delay_ratios = _drive(engine, bus)

    with read_transaction(engine) as conn:
        final = {r["message_key"]: r for r in conn.execute(sa.select(outbox)).mappings().all()}
        counts = status_counts(conn)
    delivered = {k for k, r in final.items() if r["status"] == DELIVERED}
    dead = {k for k, r in final.items() if r["status"] == DEAD}

    # Every message settled: delivered or dead-lettered, nothing left pending.
    assert counts[PENDING] == 0 and len(delivered) + len(dead) == MESSAGES
    # The outage killed the messages that arrived well inside it; the others got through.
    inside = {
        k
        for i, k in enumerate(amounts)
        if OUTAGE[0] + dt.timedelta(seconds=15)
        <= T0 + i * ENQUEUE_EVERY
        < OUTAGE[1] - dt.timedelta(seconds=45)
    }
    assert inside and inside <= dead
    assert len(delivered) > MESSAGES // 2
    # Each dead letter says why, and the sink really was called max_attempts times for it.
    letters = {letter.key: letter for letter in dead_letters(engine)}
    assert set(letters) == dead
    for key in inside:
        assert letters[key].reason == (
            f"gave up after {POLICY.max_attempts} attempts; last error: "
            "ConnectionError: bus outage: connection refused"
        )
    assert all(bus.calls[k] == POLICY.max_attempts for k in dead)
    # Every call was a claimed attempt: the recorded attempts match the sink's call counts.
    assert {k: r["attempts"] for k, r in final.items()} == dict(bus.calls)

    # At least once at the sink, exactly once at the consumer.
    assert delivered <= set(consumer.applied)
    assert set(consumer.applied.values()) == {1}
    assert consumer.total == sum(amounts[k] for k in consumer.applied)
    redelivered = [k for k, n in consumer.received.items() if n > 1]
    assert bus.crashed and bus.lost_acks > 0 and redelivered

    # Backoff: capped (checked above) and jittered over the whole [0, ceiling] range.
    assert len(delay_ratios) > 100
    assert min(delay_ratios) < 0.05 and max(delay_ratios) > 0.95
    assert 0.35 < statistics.fmean(delay_ratios) < 0.65
    assert len(set(delay_ratios)) > 0.95 * len(delay_ratios)
