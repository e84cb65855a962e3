"""RunEventStore: gapless runSeq, deduplication, conflicts, outbox in the same transaction, the
write guard, timeouts and driver errors, on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from metric_platform import write_guard
from metric_platform.db import create_db_engine, write_transaction
from metric_platform.errors import StorageError
from metric_platform.ledger.errors import LedgerConflictError
from metric_platform.ledger.events import EventIdentity, EventType, NewEvent, idempotency_key
from metric_platform.ledger.outbox import OutboxMessage
from metric_platform.ledger.schema import outbox, projector_state, run_events, runs
from metric_platform.ledger.store import (
    EVENT_TOPIC,
    AppendOutcome,
    RunEventStore,
    event_message_key,
    stored_event_from_row,
)
from metric_platform_tests.ledger._store_support import run_event, step_event

T0 = dt.datetime(2026, 3, 31, 23, 59, 0, 250_000, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(platform_url: str, clock: Clock) -> Iterator[RunEventStore]:
    with RunEventStore.open(platform_url, clock=clock) as opened:
        yield opened


def _count(store: RunEventStore, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _outbox_rows(store: RunEventStore) -> list[sa.RowMapping]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(outbox).order_by(outbox.c.id)).mappings())


def test_appends_get_gapless_run_seqs_per_run_and_increasing_positions(store: RunEventStore) -> None:
    plan = [("run-a", "s1"), ("run-b", "s1"), ("run-a", "s2"), ("run-a", "s3"), ("run-b", "s2")]
    results = [store.append(step_event(run, step)) for run, step in plan]

    assert [r.outcome for r in results] == [AppendOutcome.APPENDED] * 5
    assert [r.event.run_seq for r in results if r.event] == [1, 1, 2, 3, 2]
    positions = [r.event.position for r in results if r.event]
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert [e.run_seq for e in store.events("run-a")] == [1, 2, 3]
    assert [e.event.identity.step_id for e in store.events("run-a", after_seq=1, limit=1)] == ["s2"]
    assert store.events("run-missing") == []
    assert store.run_ids() == ["run-a", "run-b"]
    key = step_event("run-b", "s2").idempotency_key
    got = store.get("run-b", key)
    assert got is not None and got.run_seq == 2
    assert store.get("run-b", "0" * 64) is None and store.get("run-missing", key) is None


def test_every_field_round_trips_and_attempt_ids_are_stored_as_strings(
    store: RunEventStore, clock: Clock
) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    event = NewEvent(
        EventIdentity("run-rt", "step[2026-01-01..2026-01-31]", 3, 7, plan_version="fp-1"),
        EventType.STEP_COMPLETED,
        data={"artifacts": [{"uri": "s3://b/k", "kind": "parquet"}], "rows": 12, "ratio": 0.5, "name": "é|ü"},
        emitted_at=dt.datetime(2026, 3, 31, 12, 0, 0, 123_456, tzinfo=plus_two),
        engine_run_ref={"dagsterRunId": "abc", "retry": 7},
        caused_by_signal_id=uuid.uuid4(),
        parent_event_id=uuid.uuid4(),
    )
    appended = store.append(event)
    assert appended.outcome is AppendOutcome.APPENDED and appended.event is not None
    (read,) = store.events("run-rt")

    # plan_version is stored too: the event read back is exactly the one appended.
    assert read.event == event
    assert read.event.emitted_at.tzinfo == dt.UTC and read.persisted_at == clock.now
    assert read == appended.event
    assert read.event_id == event.event_id
    with store.engine.connect() as conn:
        raw = conn.execute(sa.select(run_events)).mappings().one()
    assert (raw["engine_attempt_id"], raw["logical_attempt_id"]) == ("7", "3")
    assert raw["idempotency_key"] == event.idempotency_key and raw["event_id"] == event.event_id
    assert raw["run_epoch"] == dt.date(2026, 3, 1)
    assert stored_event_from_row(raw) == read


def test_a_run_keeps_the_epoch_of_its_first_event_across_months(store: RunEventStore, clock: Clock) -> None:
    store.append(step_event("run-m", "s1"))
    clock.now = T0 + dt.timedelta(minutes=5)  # April now
    store.append(step_event("run-m", "s2"))
    store.append(step_event("run-n", "s1"))
    with store.engine.connect() as conn:
        epochs = {r.run_id: r.run_epoch for r in conn.execute(sa.select(runs.c.run_id, runs.c.run_epoch))}
        event_epochs = {
            (r.run_id, r.run_epoch)
            for r in conn.execute(sa.select(run_events.c.run_id, run_events.c.run_epoch))
        }
    assert epochs == {"run-m": dt.date(2026, 3, 1), "run-n": dt.date(2026, 4, 1)}
    assert event_epochs == {("run-m", dt.date(2026, 3, 1)), ("run-n", dt.date(2026, 4, 1))}


def test_a_duplicate_returns_the_original_event_and_writes_nothing(
    store: RunEventStore, clock: Clock
) -> None:
    first = step_event("run-d", "s1", engine=0)
    original = store.append(first)
    clock.now = T0 + dt.timedelta(seconds=30)
    retried = NewEvent(
        EventIdentity("run-d", "s1", 1, 1, "plan-1"),  # a platform retry: engine attempt 1
        EventType.STEP_STARTED,
        data=dict(first.data),
        emitted_at=first.emitted_at + dt.timedelta(seconds=29),
    )
    outbox_before, events_before = _count(store, outbox), _count(store, run_events)

    again = store.append(retried, outbox=[OutboxMessage("caller-msg", "t", {"x": 1})])

    assert again.outcome is AppendOutcome.DUPLICATE and again.event is not None
    assert again.event == original.event
    assert again.event.event.identity.engine_attempt_id == 0
    assert again.event.persisted_at == T0 and again.event.event.emitted_at == first.emitted_at
    assert again.event.event_id == retried.event_id
    assert (_count(store, outbox), _count(store, run_events)) == (outbox_before, events_before)
    nxt = store.append(step_event("run-d", "s2"))
    assert nxt.event is not None and nxt.event.run_seq == 2, "a duplicate must not consume a runSeq"


def test_a_conflicting_payload_raises_names_everything_and_leaves_no_gap(store: RunEventStore) -> None:
    store.append(step_event("run-c", "s1", data={"rows": 1}))
    long_payload = {"rows": 2, "blob": "x" * 2000}
    with pytest.raises(LedgerConflictError) as info:
        store.append(step_event("run-c", "s1", data=long_payload))
    message = str(info.value)
    key = step_event("run-c", "s1").idempotency_key
    for part in ("run-c", "s1", "StepStarted", key, '{"rows":1}', "chars)"):
        assert part in message
    assert len(message) < 1200
    assert info.value.new_payload.startswith('{"blob":"xxx')

    # Inside a caller's transaction that catches the conflict and commits anyway: still no gap.
    with write_transaction(store.engine) as conn:
        with pytest.raises(LedgerConflictError):
            store.append_in(conn, step_event("run-c", "s1", data={"rows": 3}))
        store.append_in(conn, step_event("run-c", "s2"))
    assert [e.run_seq for e in store.events("run-c")] == [1, 2]


def test_only_the_semantic_part_of_data_is_compared_and_the_first_record_is_kept(
    store: RunEventStore,
) -> None:
    artifacts = [{"uri": "s3://b/day=1.parquet", "kind": "parquet"}]
    first = {"artifacts": artifacts, "summary": {"path": "backend", "rows": 3}}
    store.append(step_event("run-s", "s1", event_type=EventType.STEP_COMPLETED, data=first))

    rerun = {"artifacts": artifacts, "summary": {"path": "memory", "rows": 3}}  # descriptive only
    again = store.append(step_event("run-s", "s1", event_type=EventType.STEP_COMPLETED, data=rerun, engine=1))
    assert again.outcome is AppendOutcome.DUPLICATE and again.event is not None
    assert again.event.event.data == first

    other = {"artifacts": [{"uri": "s3://b/other.parquet", "kind": "parquet"}], "summary": {}}
    with pytest.raises(LedgerConflictError, match=r"other\.parquet"):
        store.append(step_event("run-s", "s1", event_type=EventType.STEP_COMPLETED, data=other))
    assert [e.run_seq for e in store.events("run-s")] == [1]


@pytest.mark.parametrize(
    "data",
    [{"x": 1e16}, {"x": -0.0}, {"nested": {"big": 1e16, "zero": -0.0, "tiny": 5e-324, "int": 10**20}}],
    ids=["1e16", "minus-zero", "nested"],
)
def test_a_retry_whose_numbers_the_database_normalises_is_a_duplicate_not_a_conflict(
    store: RunEventStore, data: dict[str, Any]
) -> None:
    """PostgreSQL's JSONB gives 1e16 back as 10000000000000000 and -0.0 as 0.0: the retry must still
    be recognised by what was appended (the stored semantic hash), not by the data read back."""
    first = store.append(step_event("run-n", "s1", data=data))
    assert first.outcome is AppendOutcome.APPENDED
    again = store.append(step_event("run-n", "s1", data=data, engine=1))
    assert again.outcome is AppendOutcome.DUPLICATE and again.event is not None
    assert again.event.run_seq == 1
    with store.engine.connect() as conn:
        stored_hash = conn.execute(sa.select(run_events.c.semantic_sha256)).scalar_one()
    payload = step_event("run-n", "s1", data=data).payload_text
    assert stored_hash == hashlib.sha256(payload.encode("utf-8")).hexdigest()

    with pytest.raises(LedgerConflictError) as info:
        store.append(step_event("run-n", "s1", data={"x": 2.5}))
    assert '{"x":2.5}' in str(info.value) and info.value.new_payload == '{"x":2.5}'
    assert [e.run_seq for e in store.events("run-n")] == [1]
    assert store.append(step_event("run-n", "s2")).event is not None
    assert [e.run_seq for e in store.events("run-n")] == [1, 2], "neither retry consumed a runSeq"


def test_each_appended_event_is_announced_in_the_outbox_with_the_callers_messages(
    store: RunEventStore,
) -> None:
    event = step_event("run-o", "s1", data={"k": "v"})
    result = store.append(event, outbox=[OutboxMessage("result:run-o:s1", "alerts.result", {"ok": True})])
    assert result.event is not None
    rows = {row["message_key"]: row for row in _outbox_rows(store)}
    assert set(rows) == {event_message_key(event.idempotency_key), "result:run-o:s1"}
    announced = rows[event_message_key(event.idempotency_key)]
    assert announced["topic"] == EVENT_TOPIC and announced["status"] == "pending"
    assert announced["payload"] == {
        "runId": "run-o",
        "runSeq": 1,
        "eventId": str(event.event_id),
        "stepId": "s1",
        "eventType": "StepStarted",
        "data": {"k": "v"},
    }


def test_append_in_commits_or_rolls_back_with_the_callers_own_writes(store: RunEventStore) -> None:
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    state = {"projector": "p", "watermark_tx": 0, "watermark_position": 0, "updated_at": now}

    class Boom(Exception):
        pass

    with pytest.raises(Boom), write_transaction(store.engine) as conn:
        store.append_in(conn, step_event("run-t", "s1"))
        conn.execute(sa.insert(projector_state).values(state))
        raise Boom
    assert store.run_ids() == [] and _count(store, outbox) == 0 and _count(store, projector_state) == 0

    with write_transaction(store.engine) as conn:
        results = [store.append_in(conn, step_event("run-t", f"s{i}"), now=now) for i in range(3)]
        conn.execute(sa.insert(projector_state).values(state))
    assert [r.event.run_seq for r in results if r.event] == [1, 2, 3]
    assert [e.persisted_at for e in store.events("run-t")] == [now] * 3
    assert _count(store, outbox) == 3 and _count(store, projector_state) == 1


def test_a_dry_run_append_is_suppressed_and_touches_no_connection(store: RunEventStore) -> None:
    checkouts: list[object] = []
    statements: list[str] = []
    sa.event.listen(store.engine, "checkout", lambda *a: checkouts.append(a))
    with store.engine.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", lambda _c, _cur, stmt, *_a: statements.append(stmt))
        checkouts.clear()
        with write_guard.dry_run() as suppressed:
            assert suppressed is not None
            first = store.append(step_event("run-x", "s1"), outbox=[OutboxMessage("m", "t", {})])
            second = store.append_in(conn, step_event("run-x", "s2"))
        assert (first.outcome, first.event) == (AppendOutcome.SUPPRESSED, None)
        assert (second.outcome, second.event) == (AppendOutcome.SUPPRESSED, None)
        assert suppressed.counts == {"ledger.append": 2}
        assert checkouts == [] and statements == []
    assert store.run_ids() == [] and _count(store, outbox) == 0


def test_a_row_written_around_the_allocator_is_a_storage_error_not_a_driver_traceback(
    store: RunEventStore,
) -> None:
    stored = store.append(step_event("run-i", "s1")).event
    assert stored is not None
    with store.engine.connect() as conn:
        row = dict(conn.execute(sa.select(run_events)).mappings().one())
    # Someone inserts runSeq 2 without going through ledger_runs.last_seq.
    row.update(run_seq=2, idempotency_key="f" * 64, event_id=uuid.uuid4(), position=10_000)
    with write_transaction(store.engine) as conn:
        conn.execute(sa.insert(run_events).values(row))

    with pytest.raises(StorageError, match=r"run-i.*runSeq 2.*allocator did not write") as info:
        store.append(step_event("run-i", "s2"))
    assert not isinstance(info.value, sa.exc.DBAPIError)
    assert [e.run_seq for e in store.events("run-i")] == [1, 2]
    assert _count(store, outbox) == 1, "the failed append rolled back its outbox message"


def test_timeout_ms_bounds_the_wait_for_a_busy_run_while_other_runs_proceed(
    store: RunEventStore,
) -> None:
    other = create_db_engine(store.engine.url.render_as_string(hide_password=False))
    try:
        with write_transaction(store.engine) as holder:
            store.append_in(holder, step_event("run-busy", "s1"))
            started = dt.datetime.now(dt.UTC)
            with pytest.raises(StorageError):
                RunEventStore(other).append(step_event("run-busy", "s2"), timeout_ms=200)
            waited = (dt.datetime.now(dt.UTC) - started).total_seconds()
            assert waited < 5, f"waited {waited:.1f}s for a 200 ms budget"
            if store.engine.dialect.name == "postgresql":  # one writer per run, runs in parallel
                free = RunEventStore(other).append(step_event("run-free", "s1"), timeout_ms=2000)
                assert free.outcome is AppendOutcome.APPENDED
        assert [e.run_seq for e in store.events("run-busy")] == [1]
    finally:
        other.dispose()


def test_non_json_data_is_refused_before_anything_is_opened(store: RunEventStore) -> None:
    bad = step_event("run-j", "s1", data={"when": dt.date(2026, 1, 1)})
    with pytest.raises(Exception, match="not JSON"):
        store.append(bad)
    assert store.run_ids() == []


def test_stored_event_from_row_parses_attempt_strings_and_takes_naive_times_as_utc() -> None:
    event_id = uuid.uuid4()
    row: dict[str, Any] = {
        "run_id": "r",
        "step_id": "s",
        "logical_attempt_id": "2",
        "engine_attempt_id": "5",
        "event_type": "RunCompleted",
        "event_data": {"a": [1]},
        "emitted_at": dt.datetime(2026, 1, 2, 3, 4, 5),
        "persisted_at": dt.datetime(2026, 1, 2, 3, 4, 6, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        "adapter_version": "v",
        "engine_run_ref": None,
        "caused_by_signal_id": None,
        "parent_event_id": event_id,
        "run_seq": 9,
        "position": 11,
    }
    stored = stored_event_from_row(row, plan_version="p")
    assert stored.event.identity == EventIdentity("r", "s", 2, 5, "p")
    assert stored.event_type is EventType.RUN_COMPLETED and stored.event.parent_event_id == event_id
    assert stored.event.emitted_at == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert stored.persisted_at == dt.datetime(2026, 1, 2, 8, 4, 6, tzinfo=dt.UTC)
    assert stored.event.emitted_at.tzinfo == stored.persisted_at.tzinfo == dt.UTC
    assert (stored.run_seq, stored.position) == (9, 11)
    assert run_event("r", EventType.RUN_COMPLETED).identity.step_id == ""


# -- idempotency keys (pure) -------------------------------------------------------------------

_field = st.text(alphabet=st.sampled_from("ab|:,1é"), max_size=6)


@given(_field, _field, _field, _field, st.integers(min_value=0, max_value=3))
def test_fields_containing_the_separator_never_collide(
    a: str, b: str, c: str, plan: str, logical: int
) -> None:
    """("a|b", "c") and ("a", "b|c") join to the same "|"-separated text, yet keys differ."""
    left = idempotency_key(f"{a}|{b}", c, logical, EventType.STEP_STARTED, plan)
    right = idempotency_key(a, f"{b}|{c}", logical, EventType.STEP_STARTED, plan)
    assert left != right
    shifted = idempotency_key(a, c, logical, EventType.STEP_STARTED, f"{b}|{plan}")
    assert shifted != idempotency_key(a, f"{c}|{b}", logical, EventType.STEP_STARTED, plan)


@given(
    st.lists(
        st.tuples(_field, _field, st.integers(0, 3), st.sampled_from(list(EventType)), _field),
        min_size=2,
        max_size=30,
        unique=True,
    )
)
def test_distinct_identities_have_distinct_keys_and_engine_attempts_do_not_count(
    identities: list[tuple[str, str, int, EventType, str]],
) -> None:
    keys = {idempotency_key(*identity) for identity in identities}
    assert len(keys) == len(identities)
    run, step, logical, kind, plan = identities[0]
    retry = NewEvent(EventIdentity(run, step, logical, 9, plan), kind)
    assert retry.idempotency_key == idempotency_key(*identities[0])
    assert retry.event_id == NewEvent(EventIdentity(run, step, logical, 0, plan), kind).event_id
