"""One outbox delivery pass at a time: claims, outcomes, backoff, dead letters, fencing, dry run."""

from __future__ import annotations

import datetime as dt
import logging
import random
import statistics
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping

from metric_platform import write_guard
from metric_platform.db import create_db_engine, read_transaction, write_transaction
from metric_platform.errors import InvalidRequestError, UnknownNameError, UserError
from metric_platform.ledger.delivery import RetryPolicy, dead_letters, deliver, requeue
from metric_platform.ledger.outbox import DEAD, DELIVERED, PENDING, OutboxMessage, as_utc, enqueue
from metric_platform.ledger.schema import outbox
from metric_platform.ledger.sinks import DeliveredMessage, LogSink, PermanentDeliveryError

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
POLICY = RetryPolicy(max_attempts=3, base_delay=SECOND, max_delay=4 * SECOND, lease=60 * SECOND)


class SimulatedCrash(BaseException):
    """The deliverer's process dies (not an Exception: nothing in the pass may catch it)."""


class ScriptedSink:
    """Records every send; fails while ``failures`` holds an error for the message's key."""

    def __init__(self) -> None:
        self.sent: list[DeliveredMessage] = []
        self.failures: dict[str, BaseException] = {}

    def send(self, message: DeliveredMessage) -> None:
        self.sent.append(message)
        error = self.failures.get(message.key)
        if error is not None:
            raise error


@pytest.fixture
def engine(platform_url: str) -> Iterator[Engine]:
    engine = create_db_engine(platform_url)
    yield engine
    engine.dispose()


def _enqueue(engine: Engine, *keys: str, at: dt.datetime = T0) -> None:
    with write_transaction(engine) as conn:
        enqueue(conn, [OutboxMessage(k, "test.topic", {"key": k}) for k in keys], now=at)


def _row(engine: Engine, key: str) -> RowMapping:
    with read_transaction(engine) as conn:
        return conn.execute(sa.select(outbox).where(outbox.c.message_key == key)).mappings().one()


# -- the backoff, pure -----------------------------------------------------------------------


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    policy = RetryPolicy(base_delay=SECOND, max_delay=30 * SECOND)
    assert [policy.ceiling(n).total_seconds() for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.ceiling(10_000) == 30 * SECOND
    rng = random.Random(5)
    for attempts in (1, 3, 6, 40):
        ceiling = policy.ceiling(attempts).total_seconds()
        delays = [policy.backoff(attempts, rng).total_seconds() for _ in range(400)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
        # Full jitter: uniform over [0, ceiling], so the spread covers the whole range.
        assert min(delays) < 0.05 * ceiling and max(delays) > 0.95 * ceiling
        assert 0.4 * ceiling < statistics.fmean(delays) < 0.6 * ceiling


def test_policies_that_cannot_work_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(InvalidRequestError, match="base_delay <= max_delay"):
        RetryPolicy(base_delay=10 * SECOND, max_delay=SECOND)
    with pytest.raises(InvalidRequestError, match="lease > 0"):
        RetryPolicy(lease=dt.timedelta(0))


# -- passes against the database -----------------------------------------------------------


def test_due_messages_are_sent_oldest_first_and_marked_delivered(engine: Engine) -> None:
    _enqueue(engine, "b1", "b2", at=T0 - SECOND)
    _enqueue(engine, "a1", at=T0 - 2 * SECOND)
    _enqueue(engine, "later", at=T0 + SECOND)
    sink = ScriptedSink()
    report = deliver(engine, sink, now=T0, policy=POLICY, batch=2)
    assert (report.due, report.delivered, report.retried, report.dead_lettered) == (2, 2, 0, 0)
    report = deliver(engine, sink, now=T0, policy=POLICY, batch=2)
    assert (report.due, report.delivered) == (1, 1)
    assert [(m.key, m.attempt, m.topic, dict(m.payload)) for m in sink.sent] == [
        ("a1", 1, "test.topic", {"key": "a1"}),
        ("b1", 1, "test.topic", {"key": "b1"}),
        ("b2", 1, "test.topic", {"key": "b2"}),
    ]
    assert sink.sent[0].created_at == T0 - 2 * SECOND
    delivered = _row(engine, "b2")
    assert (delivered["status"], delivered["attempts"], as_utc(delivered["delivered_at"])) == (
        DELIVERED,
        1,
        T0,
    )
    assert _row(engine, "later")["status"] == PENDING
    assert deliver(engine, sink, now=T0, policy=POLICY).due == 0


def test_failures_back_off_then_dead_letter_with_the_reason(engine: Engine) -> None:
    _enqueue(engine, "m")
    sink = ScriptedSink()
    sink.failures["m"] = ConnectionError("bus unreachable")
    now = T0
    reports = []
    for _ in range(POLICY.max_attempts):
        reports.append(deliver(engine, sink, now=now, policy=POLICY, rng=random.Random(1)))
        row = _row(engine, "m")
        if row["status"] == PENDING:
            delay = as_utc(row["next_attempt_at"]) - now
            assert dt.timedelta(0) <= delay <= POLICY.ceiling(row["attempts"])
            assert row["last_error"] == "ConnectionError: bus unreachable"
            # Not due again before its backoff has passed.
            if delay > dt.timedelta(0):
                assert deliver(engine, sink, now=now, policy=POLICY).due == 0
            now = as_utc(row["next_attempt_at"])
    assert [(r.retried, r.dead_lettered) for r in reports] == [(1, 0), (1, 0), (0, 1)]
    assert [m.attempt for m in sink.sent] == [1, 2, 3]
    row = _row(engine, "m")
    assert (row["status"], row["attempts"], as_utc(row["dead_lettered_at"])) == (DEAD, 3, now)
    [letter] = dead_letters(engine)
    assert letter.key == "m" and letter.attempts == 3 and letter.dead_lettered_at == now
    assert letter.reason == "gave up after 3 attempts; last error: ConnectionError: bus unreachable"
    assert dead_letters(engine, topic="other.topic") == []
    assert deliver(engine, sink, now=now + dt.timedelta(days=1), policy=POLICY).due == 0


def test_a_permanent_error_dead_letters_at_once(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    _enqueue(engine, "poison", "fine")
    sink = ScriptedSink()
    sink.failures["poison"] = PermanentDeliveryError("schema rejected")
    with caplog.at_level(logging.ERROR, logger="metric_platform.ledger.delivery"):
        report = deliver(engine, sink, now=T0, policy=POLICY)
    assert (report.delivered, report.retried, report.dead_lettered) == (1, 0, 1)
    [letter] = dead_letters(engine)
    assert letter.reason == "rejected as undeliverable on attempt 1: PermanentDeliveryError: schema rejected"
    assert "poison" in caplog.text and "dead-lettered" in caplog.text


def test_requeue_gives_a_dead_letter_a_fresh_budget(engine: Engine) -> None:
    _enqueue(engine, "m", "ok")
    sink = ScriptedSink()
    sink.failures["m"] = PermanentDeliveryError("down for maintenance")
    deliver(engine, sink, now=T0, policy=POLICY)
    with pytest.raises(UnknownNameError, match="no outbox message has the key 'nope'"):
        requeue(engine, "nope", now=T0)
    with pytest.raises(UserError, match="'ok' is delivered, not dead"):
        requeue(engine, "ok", now=T0)
    assert requeue(engine, "m", now=T0 + SECOND) is True
    row = _row(engine, "m")
    assert (row["status"], row["attempts"], row["dead_lettered_at"]) == (PENDING, 0, None)
    assert row["last_error"].endswith("down for maintenance")  # kept until a new attempt
    del sink.failures["m"]
    assert deliver(engine, sink, now=T0, policy=POLICY).due == 0  # due at the requeue time
    assert deliver(engine, sink, now=T0 + SECOND, policy=POLICY).delivered == 1
    assert _row(engine, "m")["status"] == DELIVERED and dead_letters(engine) == []


def test_a_crash_after_sending_resends_once_the_lease_expires(engine: Engine) -> None:
    _enqueue(engine, "first", "second")
    sink = ScriptedSink()
    sink.failures["first"] = SimulatedCrash()
    with pytest.raises(SimulatedCrash):
        deliver(engine, sink, now=T0, policy=POLICY)
    # Both were claimed; the crash left both leased, neither settled.
    for key in ("first", "second"):
        row = _row(engine, key)
        assert (row["status"], row["attempts"], as_utc(row["next_attempt_at"])) == (
            PENDING,
            1,
            T0 + POLICY.lease,
        )
    del sink.failures["first"]
    assert deliver(engine, sink, now=T0 + POLICY.lease - SECOND, policy=POLICY).due == 0
    report = deliver(engine, sink, now=T0 + POLICY.lease, policy=POLICY)
    assert report.delivered == 2
    # "first" was sent twice (at least once); the consumer dedupes by key.
    assert [(m.key, m.attempt) for m in sink.sent] == [("first", 1), ("first", 2), ("second", 2)]


def test_a_stale_claims_failure_never_overwrites_the_newer_claim(engine: Engine) -> None:
    """Deliverer A's lease expires while its send hangs; B claims, and settles the message first."""
    _enqueue(engine, "m")
    lease = POLICY.lease
    b_sink = ScriptedSink()
    b_sink.failures["m"] = ConnectionError("B failed too")

    class StaleSink:
        def send(self, message: DeliveredMessage) -> None:
            b_report = deliver(engine, b_sink, now=T0 + lease, policy=POLICY, rng=random.Random(3))
            assert (b_report.due, b_report.retried) == (1, 1)
            raise TimeoutError("A's send timed out")

    report = deliver(engine, StaleSink(), now=T0, policy=POLICY)
    assert (report.due, report.retried, report.dead_lettered) == (1, 0, 0)  # A's outcome was fenced off
    row = _row(engine, "m")
    assert (row["attempts"], row["last_error"]) == (2, "ConnectionError: B failed too")
    assert as_utc(row["next_attempt_at"]) <= T0 + lease + POLICY.ceiling(2)

    # And a stale success still settles the message: it did get through.
    _enqueue(engine, "n")
    c_sink = ScriptedSink()

    class SlowButSuccessfulSink:
        def send(self, message: DeliveredMessage) -> None:
            assert deliver(engine, c_sink, now=T0 + lease, policy=POLICY).delivered == 1

    assert deliver(engine, SlowButSuccessfulSink(), now=T0, policy=POLICY).delivered == 0
    assert _row(engine, "n")["status"] == DELIVERED


def test_a_dry_run_reports_what_is_due_and_writes_nothing(engine: Engine) -> None:
    _enqueue(engine, "a", "b")
    _enqueue(engine, "not-yet", at=T0 + SECOND)
    dead_sink = ScriptedSink()
    dead_sink.failures["b"] = PermanentDeliveryError("no")
    deliver(engine, dead_sink, now=T0 - SECOND, policy=POLICY)  # nothing due yet
    _enqueue(engine, "c")
    with read_transaction(engine) as conn:
        before = conn.execute(sa.select(outbox).order_by(outbox.c.id)).mappings().all()
    sink = ScriptedSink()
    with write_guard.dry_run() as suppressed:
        report = deliver(engine, sink, now=T0, policy=POLICY)
        with pytest.raises(UserError, match="is pending, not dead"):
            requeue(engine, "a", now=T0)
    assert suppressed is not None
    assert (report.due, report.delivered, report.dry_run) == (3, 0, True)
    assert sink.sent == []
    assert suppressed.counts["outbox.deliver"] == 3
    with read_transaction(engine) as conn:
        assert conn.execute(sa.select(outbox).order_by(outbox.c.id)).mappings().all() == before


def test_a_dry_run_requeue_changes_nothing(engine: Engine) -> None:
    _enqueue(engine, "m")
    sink = ScriptedSink()
    sink.failures["m"] = PermanentDeliveryError("no")
    deliver(engine, sink, now=T0, policy=POLICY)
    with write_guard.dry_run() as suppressed:
        assert requeue(engine, "m", now=T0) is False
    assert suppressed is not None and suppressed.counts["outbox.requeue"] == 1
    assert _row(engine, "m")["status"] == DEAD


def test_a_naive_clock_reading_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidRequestError, match="no time zone"):
        deliver(engine, ScriptedSink(), now=dt.datetime(2026, 3, 1, 12, 0))
    with pytest.raises(InvalidRequestError, match="batch must be at least 1"):
        deliver(engine, ScriptedSink(), now=T0, batch=0)


def test_the_log_sink_logs_one_structured_line_per_message(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    _enqueue(engine, "k1", "k2")
    with caplog.at_level(logging.INFO, logger="metric_platform.ledger.sinks"):
        assert deliver(engine, LogSink(), now=T0).delivered == 2
    records = [r for r in caplog.records if r.name == "metric_platform.ledger.sinks"]
    assert [r.getMessage() for r in records] == [
        'outbox message topic=test.topic key=k1 attempt=1 payload={"key":"k1"}',
        'outbox message topic=test.topic key=k2 attempt=1 payload={"key":"k2"}',
    ]
    assert [getattr(r, "outbox_key", None) for r in records] == ["k1", "k2"]
