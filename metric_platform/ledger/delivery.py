"""The outbox retry worker (seed 004 §4): at-least-once delivery with capped, jittered backoff.

One :func:`deliver` pass:

1. **claim** up to ``batch`` due messages (pending, ``next_attempt_at <= now``) in one short write
   transaction: ``attempts + 1`` and a lease (``next_attempt_at = now + policy.lease``), so no
   other deliverer picks them up while they are being sent. On PostgreSQL the rows are selected
   ``FOR UPDATE SKIP LOCKED`` (concurrent deliverers split the due rows instead of queueing on
   each other's locks, and a row whose lease was just taken no longer matches when re-checked);
   on SQLite ``BEGIN IMMEDIATE`` serialises the claims.
2. **send** each message with no transaction open: a slow or hanging sink never holds a lock.
3. **record** each outcome in its own transaction: delivered; or failed, retried after a full
   jitter backoff ``uniform(0, min(max_delay, base_delay * 2**(attempts - 1)))``; or dead after
   ``policy.max_attempts`` failures (or at once for a :class:`PermanentDeliveryError`), with the
   reason in ``last_error``. A failure is recorded only while ``attempts`` still equals the claim's
   value: it is the fencing token that keeps a deliverer whose lease expired from overwriting the
   newer claim's outcome.

A crash between send and outcome leaves the lease to expire, and the message is sent again: a
consumer deduplicates by the message key. The lease must therefore outlast a pass's sends.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from metric_platform import write_guard
from metric_platform.db import read_transaction, write_transaction
from metric_platform.errors import InvalidRequestError, UnknownNameError, UserError
from metric_platform.ledger.events import JSONValue
from metric_platform.ledger.outbox import DEAD, DELIVERED, PENDING, as_utc
from metric_platform.ledger.schema import outbox
from metric_platform.ledger.sinks import DeliveredMessage, PermanentDeliveryError, Sink

_LOG = logging.getLogger(__name__)
_MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a message is retried.

    ``lease`` is how long a claimed message is hidden from other deliverers: longer than one
    pass's sends, or a slow pass lets another deliverer send the same message concurrently.
    """

    max_attempts: int = 10
    base_delay: dt.timedelta = dt.timedelta(seconds=2)
    max_delay: dt.timedelta = dt.timedelta(minutes=10)
    lease: dt.timedelta = dt.timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            msg = f"max_attempts must be at least 1, not {self.max_attempts}"
            raise InvalidRequestError(msg)
        zero = dt.timedelta(0)
        if self.base_delay <= zero or self.max_delay < self.base_delay or self.lease <= zero:
            msg = (
                f"retry delays must satisfy 0 < base_delay <= max_delay and lease > 0; got "
                f"base_delay={self.base_delay}, max_delay={self.max_delay}, lease={self.lease}"
            )
            raise InvalidRequestError(msg)

    def ceiling(self, attempts: int) -> dt.timedelta:
        """The largest delay after the ``attempts``-th failure: ``min(max_delay, base * 2**(n-1))``."""
        # Capped exponent: timedelta arithmetic overflows long before a retry count could matter.
        exponent = min(max(attempts - 1, 0), 64)
        uncapped = self.base_delay.total_seconds() * 2.0**exponent
        return min(self.max_delay, dt.timedelta(seconds=min(uncapped, self.max_delay.total_seconds())))

    def backoff(self, attempts: int, rng: random.Random) -> dt.timedelta:
        """Full jitter (uniform over [0, ceiling]): retries of messages that failed together spread out
        instead of hitting a recovering sink in lockstep."""
        ceiling = self.ceiling(attempts).total_seconds()
        return dt.timedelta(seconds=rng.uniform(0.0, ceiling))


@dataclass(frozen=True)
class DeliveryReport:
    """One pass. ``due``: messages claimed (in a dry run: found due, none claimed or sent)."""

    delivered: int
    retried: int
    dead_lettered: int
    due: int = 0
    dry_run: bool = False


@dataclass(frozen=True)
class DeadLetter:
    """A message that gave up; ``reason`` says why (the last error and the number of attempts)."""

    key: str
    topic: str
    payload: Mapping[str, JSONValue]
    attempts: int
    created_at: dt.datetime
    dead_lettered_at: dt.datetime
    reason: str


@dataclass(frozen=True)
class _Claim:
    id: int
    message: DeliveredMessage


def deliver(
    engine: Engine,
    sink: Sink,
    *,
    now: dt.datetime,
    policy: RetryPolicy | None = None,
    rng: random.Random | None = None,
    batch: int = 100,
) -> DeliveryReport:
    """Send the messages due at ``now`` (at most ``batch``) through ``sink``; see the module docstring.

    ``now`` is the pass's clock reading (aware); every timestamp the pass writes derives from it,
    which is what lets tests drive delivery with a simulated clock. In a dry run nothing is
    claimed, sent or written: the report only counts what is due.
    """
    policy = policy or RetryPolicy()
    rng = rng or random.Random()
    now = _aware_utc(now)
    if batch < 1:
        msg = f"batch must be at least 1, not {batch}"
        raise InvalidRequestError(msg)
    if write_guard.is_dry_run():
        due = _count_due(engine, now=now, batch=batch)
        if due:
            write_guard.permit("outbox.deliver", due)
        return DeliveryReport(delivered=0, retried=0, dead_lettered=0, due=due, dry_run=True)

    claims = _claim(engine, now=now, policy=policy, batch=batch)
    delivered = retried = dead = 0
    for claim in claims:
        try:
            sink.send(claim.message)
        except PermanentDeliveryError as exc:
            reason = f"rejected as undeliverable on attempt {claim.message.attempt}: {_describe(exc)}"
            dead += _record_failure(engine, claim, now=now, reason=reason, dead=True, retry_at=now)
            continue
        except Exception as exc:
            error = _describe(exc)
            if claim.message.attempt >= policy.max_attempts:
                reason = f"gave up after {claim.message.attempt} attempts; last error: {error}"
                dead += _record_failure(engine, claim, now=now, reason=reason, dead=True, retry_at=now)
            else:
                retry_at = now + policy.backoff(claim.message.attempt, rng)
                retried += _record_failure(
                    engine, claim, now=now, reason=error, dead=False, retry_at=retry_at
                )
            continue
        delivered += _record_delivered(engine, claim, now=now)
    return DeliveryReport(delivered=delivered, retried=retried, dead_lettered=dead, due=len(claims))


def dead_letters(engine: Engine, *, topic: str | None = None) -> list[DeadLetter]:
    """The dead-lettered messages (oldest first), each with the reason it gave up."""
    query = sa.select(outbox).where(outbox.c.status == DEAD)
    if topic is not None:
        query = query.where(outbox.c.topic == topic)
    with read_transaction(engine) as conn:
        rows = conn.execute(query.order_by(outbox.c.dead_lettered_at, outbox.c.id)).mappings().all()
    return [
        DeadLetter(
            key=row["message_key"],
            topic=row["topic"],
            payload=row["payload"],
            attempts=row["attempts"],
            created_at=as_utc(row["created_at"]),
            dead_lettered_at=as_utc(row["dead_lettered_at"]),
            reason=row["last_error"] or "",
        )
        for row in rows
    ]


def requeue(engine: Engine, key: str, *, now: dt.datetime | None = None) -> bool:
    """Give the dead letter ``key`` a fresh retry budget, due at ``now``; False in a dry run.

    Its last error is kept until a new attempt replaces it. Raises :class:`UnknownNameError` for a
    key that is not in the outbox and :class:`UserError` for one that is not dead.
    """
    now = _aware_utc(now or dt.datetime.now(dt.UTC))
    if write_guard.is_dry_run():
        _require_dead(engine, key)
        return write_guard.permit("outbox.requeue")
    with write_transaction(engine) as conn:
        changed = conn.execute(
            sa.update(outbox)
            .where(outbox.c.message_key == key, outbox.c.status == DEAD)
            .values(status=PENDING, attempts=0, next_attempt_at=now, dead_lettered_at=None)
        ).rowcount
        if not changed:
            _raise_not_dead(conn, key)
    _LOG.info("outbox message %s requeued by hand", key)
    return True


def _claim(engine: Engine, *, now: dt.datetime, policy: RetryPolicy, batch: int) -> list[_Claim]:
    due = (
        sa.select(outbox.c.id)
        .where(outbox.c.status == PENDING, outbox.c.next_attempt_at <= now)
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    with write_transaction(engine) as conn:
        ids = list(conn.execute(due).scalars())
        if not ids:
            return []
        rows = (
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_(ids))
                .values(attempts=outbox.c.attempts + 1, next_attempt_at=now + policy.lease)
                .returning(
                    outbox.c.id,
                    outbox.c.message_key,
                    outbox.c.topic,
                    outbox.c.payload,
                    outbox.c.attempts,
                    outbox.c.created_at,
                )
            )
            .mappings()
            .all()
        )
    order = {row_id: i for i, row_id in enumerate(ids)}
    return [_to_claim(row) for row in sorted(rows, key=lambda row: order[row["id"]])]


def _to_claim(row: RowMapping) -> _Claim:
    message = DeliveredMessage(
        key=row["message_key"],
        topic=row["topic"],
        payload=row["payload"],
        attempt=row["attempts"],
        created_at=as_utc(row["created_at"]),
    )
    return _Claim(id=row["id"], message=message)


def _record_delivered(engine: Engine, claim: _Claim, *, now: dt.datetime) -> int:
    # No fencing here: the message did get through, whichever claim sent it.
    with write_transaction(engine) as conn:
        changed = conn.execute(
            sa.update(outbox)
            .where(outbox.c.id == claim.id, outbox.c.status == PENDING)
            .values(status=DELIVERED, delivered_at=now)
        ).rowcount
    if not changed:
        _LOG.info("outbox message %s was already settled by another deliverer", claim.message.key)
    return 1 if changed else 0


def _record_failure(
    engine: Engine, claim: _Claim, *, now: dt.datetime, reason: str, dead: bool, retry_at: dt.datetime
) -> int:
    reason = reason[:_MAX_ERROR_CHARS]
    values: dict[str, object] = {"last_error": reason, "next_attempt_at": retry_at}
    if dead:
        values.update(status=DEAD, dead_lettered_at=now)
    with write_transaction(engine) as conn:
        changed = conn.execute(
            sa.update(outbox)
            .where(
                outbox.c.id == claim.id,
                outbox.c.status == PENDING,
                outbox.c.attempts == claim.message.attempt,
            )
            .values(**values)
        ).rowcount
    key = claim.message.key
    if not changed:
        _LOG.info("outbox message %s: a newer claim owns it; this attempt's failure is not recorded", key)
        return 0
    if dead:
        # Seed 004 §4: "after N failures -> DLQ with alert".
        _LOG.error("outbox message %s (topic %s) dead-lettered: %s", key, claim.message.topic, reason)
    else:
        _LOG.warning(
            "outbox message %s attempt %d failed, retry at %s: %s",
            key,
            claim.message.attempt,
            retry_at.isoformat(),
            reason,
        )
    return 1


def _count_due(engine: Engine, *, now: dt.datetime, batch: int) -> int:
    due = (
        sa.select(outbox.c.id)
        .where(outbox.c.status == PENDING, outbox.c.next_attempt_at <= now)
        .limit(batch)
        .subquery()
    )
    with read_transaction(engine) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(due)).scalar_one())


def _require_dead(engine: Engine, key: str) -> None:
    with read_transaction(engine) as conn:
        status = conn.execute(sa.select(outbox.c.status).where(outbox.c.message_key == key)).scalar()
        if status != DEAD:
            _raise_not_dead(conn, key)


def _raise_not_dead(conn: Connection, key: str) -> None:
    status = conn.execute(sa.select(outbox.c.status).where(outbox.c.message_key == key)).scalar()
    if status is None:
        msg = f"no outbox message has the key {key!r}; list the dead letters with dead_letters() for theirs"
        raise UnknownNameError(msg)
    msg = f"outbox message {key!r} is {status}, not dead; only a dead letter can be requeued"
    raise UserError(msg)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _aware_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        msg = f"{value.isoformat()} has no time zone; pass an aware datetime (e.g. datetime.now(UTC))"
        raise InvalidRequestError(msg)
    # SQLite stores a timestamp's wall clock and drops its zone: everything is written in UTC.
    return value.astimezone(dt.UTC)
