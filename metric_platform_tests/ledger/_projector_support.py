"""Event builders and Hypothesis strategies shared by the projection and projector tests."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from hypothesis import strategies as st
from sqlalchemy.engine import Connection, Engine

from metric_platform.db import create_db_engine, read_transaction, write_transaction
from metric_platform.ledger.alerts import ALERT_TOPIC
from metric_platform.ledger.events import (
    RUN_STEP,
    EventIdentity,
    EventType,
    JSONValue,
    NewEvent,
    StoredEvent,
)
from metric_platform.ledger.projection import RunSnapshot, project_run
from metric_platform.ledger.projector import Projector
from metric_platform.ledger.schema import outbox, position_sequence, run_events, run_snapshots, runs
from metric_platform.ledger.store import RunEventStore, event_row

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
STEP_TYPES = (EventType.STEP_STARTED, EventType.STEP_COMPLETED, EventType.STEP_FAILED, EventType.STEP_SKIPPED)


def new_event(
    run_id: str,
    event_type: EventType,
    *,
    step: str | None = None,
    attempt: int = 1,
    engine: int = 0,
    data: Mapping[str, JSONValue] | None = None,
    at: dt.datetime = T0,
    engine_run_ref: Mapping[str, JSONValue] | None = None,
    plan_version: str = "p1",
) -> NewEvent:
    step_id = step if step is not None else ("s1" if event_type.is_step_event else RUN_STEP)
    identity = EventIdentity(run_id, step_id, attempt, engine, plan_version)
    return NewEvent(identity, event_type, dict(data or {}), emitted_at=at, engine_run_ref=engine_run_ref)


def stored(event: NewEvent, seq: int, *, position: int | None = None) -> StoredEvent:
    return StoredEvent(
        event=event,
        run_seq=seq,
        position=seq if position is None else position,
        persisted_at=event.emitted_at,
    )


def log(*events: NewEvent) -> list[StoredEvent]:
    """Store ``events`` as runSeq 1, 2, ..."""
    return [stored(event, i) for i, event in enumerate(events, start=1)]


def artifact(uri: str, kind: str = "parquet") -> dict[str, JSONValue]:
    return {"uri": uri, "kind": kind, "sha256": "ab" * 32, "sizeBytes": 10}


@dataclass(frozen=True)
class EventSpec:
    """A generated event before it has a run id and seq (Hypothesis draws these)."""

    event_type: EventType
    step: str
    attempt: int
    engine: int
    offset_s: int
    data: Mapping[str, JSONValue]

    def build(self, run_id: str) -> NewEvent:
        step = self.step if self.event_type.is_step_event else RUN_STEP
        ref: dict[str, JSONValue] | None = None
        if self.event_type is EventType.RUN_STARTED:
            ref = {"dagsterRunId": f"d{self.attempt}", "tags": [self.step]}
        return new_event(
            run_id,
            self.event_type,
            step=step,
            attempt=self.attempt,
            engine=self.engine,
            data=self.data,
            at=T0 + dt.timedelta(seconds=self.offset_s),
            engine_run_ref=ref,
        )


def _data_for(event_type: EventType, step: str, attempt: int) -> st.SearchStrategy[dict[str, JSONValue]]:
    if event_type in (EventType.STEP_COMPLETED, EventType.RUN_COMPLETED):
        refs = st.lists(st.sampled_from(["a", "b", "c", step]), max_size=3).map(
            lambda names: [artifact(f"s3://bucket/{n}/{attempt}") for n in names]
        )
        return refs.map(lambda a: {"artifacts": a})
    if event_type in (EventType.STEP_FAILED, EventType.RUN_FAILED):
        return st.sampled_from(
            [
                {"error": {"code": "E1", "message": "boom", "retryable": True}},
                {"error": "bare message"},
                {},
            ]
        )
    if event_type is EventType.STEP_SKIPPED:
        return st.just({"reason": "upstream failed"})
    return st.just({})


@st.composite
def event_specs(draw: st.DrawFn) -> EventSpec:
    event_type = draw(st.sampled_from(list(EventType)))
    step = draw(st.sampled_from(["s1", "s2", "s3"]))
    attempt = draw(st.integers(1, 3))
    return EventSpec(
        event_type=event_type,
        step=step,
        attempt=attempt,
        engine=draw(st.integers(0, 2)),
        offset_s=draw(st.integers(0, 3600)),
        data=draw(_data_for(event_type, step, attempt)),
    )


def build_log(run_id: str, specs: Sequence[EventSpec]) -> list[StoredEvent]:
    return [stored(spec.build(run_id), i) for i, spec in enumerate(specs, start=1)]


# -- writing rows around the store (gaps, bulk loads) ------------------------------------------


def _tx_and_positions(conn: Connection, n: int) -> tuple[int, list[int]]:
    """The current transaction's id and ``n`` fresh positions, allocated as the store does."""
    if conn.dialect.name == "postgresql":
        tx = int(conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one())
        positions = [
            int(p)
            for p in conn.execute(
                sa.select(position_sequence.next_value()).select_from(sa.func.generate_series(1, n))
            ).scalars()
        ]
        return tx, positions
    top = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(run_events.c.position), 0))).scalar_one())
    return 0, list(range(top + 1, top + 1 + n))


def insert_raw(engine: Engine, event: NewEvent, run_seq: int) -> None:
    """Write one event row at ``run_seq`` bypassing the runSeq allocator (a gap, or its filler)."""
    with write_transaction(engine) as conn:
        epoch = conn.execute(
            sa.select(runs.c.run_epoch).where(runs.c.run_id == event.identity.run_id)
        ).scalar_one()
        tx, (position,) = _tx_and_positions(conn, 1)
        row = event_row(event, run_epoch=epoch, run_seq=run_seq, persisted_at=dt.datetime.now(dt.UTC))
        conn.execute(sa.insert(run_events).values(**row, position=position, tx_id=tx))


def delete_raw(engine: Engine, run_id: str, run_seq: int) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            sa.delete(run_events).where(run_events.c.run_id == run_id, run_events.c.run_seq == run_seq)
        )


def bulk_load(engine: Engine, logs: Mapping[str, Sequence[NewEvent]], *, per_txn: int = 2000) -> int:
    """Store every run's events as runSeq 1..n, interleaved across runs in position order, with
    ``per_txn`` rows per transaction: the rows the store would write, at bulk speed."""
    now = dt.datetime.now(dt.UTC)
    epoch = now.date().replace(day=1)
    with write_transaction(engine) as conn:
        conn.execute(
            sa.insert(runs),
            [
                {"run_id": r, "run_epoch": epoch, "last_seq": len(events), "created_at": now}
                for r, events in logs.items()
            ],
        )
    order: list[tuple[str, int, NewEvent]] = []
    longest = max((len(e) for e in logs.values()), default=0)
    for i in range(longest):
        order.extend((r, i + 1, events[i]) for r, events in logs.items() if i < len(events))
    for start in range(0, len(order), per_txn):
        chunk = order[start : start + per_txn]
        with write_transaction(engine) as conn:
            tx, positions = _tx_and_positions(conn, len(chunk))
            rows = [
                {
                    **event_row(event, run_epoch=epoch, run_seq=seq, persisted_at=now),
                    "position": position,
                    "tx_id": tx,
                }
                for (_, seq, event), position in zip(chunk, positions, strict=True)
            ]
            conn.execute(sa.insert(run_events), rows)
    return len(order)


def stored_snapshots(engine: Engine) -> dict[str, tuple[RunSnapshot, int | None]]:
    """Every snapshot row: the snapshot and its ``halted_at_seq``."""
    with read_transaction(engine) as conn:
        rows = conn.execute(sa.select(run_snapshots)).mappings().all()
    return {str(r["run_id"]): (RunSnapshot.from_json(r["snapshot"]), r["halted_at_seq"]) for r in rows}


def clean_fold(store: RunEventStore, run_id: str, *, through: int | None = None) -> RunSnapshot:
    """The fold of the run's stored events (those up to runSeq ``through``)."""
    events = store.events(run_id)
    return project_run(run_id, [e for e in events if through is None or e.run_seq <= through])


def outbox_alerts(engine: Engine) -> list[dict[str, Any]]:
    with read_transaction(engine) as conn:
        rows = conn.execute(
            sa.select(outbox.c.message_key, outbox.c.payload)
            .where(outbox.c.topic == ALERT_TOPIC)
            .order_by(outbox.c.id)
        ).all()
    return [{"key": r.message_key, **r.payload} for r in rows]


# -- synthetic logs and the crash worker -------------------------------------------------------


def synthetic_run(run_id: str, n: int, rng: random.Random) -> list[NewEvent]:
    """``n`` events of one plausible run: approval, start, steps with retries, failures, skips,
    late StepStarted, signals, pauses, and an outcome at the end; every idempotency key distinct."""
    at = T0 + dt.timedelta(seconds=rng.randint(0, 3600))
    out = [new_event(run_id, EventType.RUN_APPROVED, at=at), new_event(run_id, EventType.RUN_STARTED, at=at)]
    step = 0
    while len(out) < n - 1:
        step += 1
        name = f"step-{step:04d}"
        at += dt.timedelta(seconds=rng.randint(1, 30))
        attempt = rng.choice([1, 1, 1, 2])
        roll = rng.random()
        data: dict[str, JSONValue]
        started = new_event(run_id, EventType.STEP_STARTED, step=name, attempt=attempt, at=at)
        if roll < 0.55:
            data = {"artifacts": [artifact(f"s3://{run_id}/{name}")]}
            outcome = new_event(
                run_id, EventType.STEP_COMPLETED, step=name, attempt=attempt, data=data, at=at
            )
        elif roll < 0.75:
            data = {"error": {"code": "E", "message": name, "retryable": True}}
            outcome = new_event(run_id, EventType.STEP_FAILED, step=name, attempt=attempt, data=data, at=at)
        elif roll < 0.85:
            outcome = new_event(run_id, EventType.STEP_SKIPPED, step=name, data={"reason": "upstream"}, at=at)
        elif roll < 0.93:
            signal = rng.choice([EventType.SIGNAL_ACCEPTED, EventType.SIGNAL_REJECTED])
            out.append(new_event(run_id, signal, plan_version=name, at=at))
            continue
        else:
            kind = EventType.RUN_PAUSED if len(out) % 2 else EventType.RUN_RESUMED
            out.append(new_event(run_id, kind, plan_version=name, at=at))
            continue
        pair = [outcome, started] if rng.random() < 0.1 else [started, outcome]  # a late StepStarted
        out.extend(pair)
    end = rng.choice([EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED])
    out.append(new_event(run_id, end, at=at + dt.timedelta(seconds=5)))
    return [*out[: n - 1], out[-1]] if len(out) > n else out


def projector_worker(url: str, batch_size: int, started: Any) -> None:
    """Poll until caught up (run in a spawned process the test SIGKILLs at random moments)."""
    engine = create_db_engine(url)
    projector = Projector(engine, batch_size=batch_size)
    started.set()
    while projector.poll().applied:
        pass
    engine.dispose()


def snapshot_progress(engine: Engine) -> int:
    with read_transaction(engine) as conn:
        total = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(run_snapshots.c.events_applied), 0))
        ).scalar_one()
    return int(total)
