"""The fail-open spool: atomic, idempotent files; replays that append once and survive bad files."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from metric_platform import write_guard
from metric_platform.db import write_transaction
from metric_platform.errors import StorageError
from metric_platform.ledger.codec import event_from_json, event_to_json
from metric_platform.ledger.events import EventIdentity, EventType, NewEvent
from metric_platform.ledger.schema import run_events
from metric_platform.ledger.spool import CORRUPT_DIR, FailureKind, ReplayReport, Spool, failure_kind
from metric_platform.ledger.store import AppendResult, RunEventStore

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def started(run_id: str, step_id: str, *, at: dt.datetime = T0, engine_attempt: int = 0) -> NewEvent:
    return NewEvent(
        identity=EventIdentity(
            run_id=run_id, step_id=step_id, engine_attempt_id=engine_attempt, plan_version="p1"
        ),
        event_type=EventType.STEP_STARTED,
        data={"step": step_id},
        emitted_at=at,
    )


def _storage_error(cause: BaseException) -> StorageError:
    """A StorageError as the store raises it: the driver error translated, kept as ``__cause__``."""
    try:
        raise StorageError(f"write transaction on postgresql://db/ledger failed: {cause}") from cause
    except StorageError as exc:
        return exc


def _sa_error(kind: type[sa.exc.DBAPIError], orig: BaseException) -> sa.exc.DBAPIError:
    return kind("INSERT INTO ledger_run_events ...", {}, orig)


class FailingStore:
    """A ledger whose every append raises ``error``."""

    def __init__(self, error: StorageError) -> None:
        self.error = error
        self.calls = 0

    def append(self, event: NewEvent, *, timeout_ms: int | None = None) -> AppendResult:
        self.calls += 1
        raise self.error


def down_store() -> FailingStore:
    """A ledger whose database is unreachable."""
    refused = sqlite3.OperationalError("connection refused")
    return FailingStore(_storage_error(_sa_error(sa.exc.OperationalError, refused)))


def test_put_writes_one_file_per_event_named_by_its_key(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    assert spool.pending() == []
    assert not spool.directory.exists()  # nothing is created before the first event
    event = started("run-1", "a")
    path = spool.put(event)
    assert path == spool.directory / f"{event.idempotency_key}.json"
    assert event_from_json(json.loads(path.read_text(encoding="utf-8"))) == event
    # A platform retry of the same logical attempt is the same event: still one file.
    assert spool.put(started("run-1", "a", engine_attempt=1)) == path
    assert spool.pending() == [path]
    assert sorted(p.name for p in spool.directory.iterdir()) == [path.name]  # no temp files left


def test_replay_appends_each_event_once_then_a_second_replay_is_a_no_op(
    tmp_path: Path, ledger_store: RunEventStore
) -> None:
    spool = Spool(tmp_path / "spool")
    a, b, c = (
        started("run-1", "a"),
        started("run-1", "b", at=T0 + dt.timedelta(seconds=1)),
        started("run-2", "x"),
    )
    for event in (a, b, c):
        spool.put(event)
    ledger_store.append(b)  # b made it after all (its append timed out on our side but committed)

    assert spool.replay(ledger_store) == ReplayReport(replayed=2, duplicates=1)
    assert spool.pending() == []
    assert [e.event.identity.step_id for e in ledger_store.events("run-1")] == ["b", "a"]
    stored_c = ledger_store.get("run-2", c.idempotency_key)  # stored under the spooled event's key
    assert stored_c is not None and len(ledger_store.events("run-2")) == 1
    assert stored_c.event.emitted_at == c.emitted_at and stored_c.event.data == c.data
    assert spool.replay(ledger_store) == ReplayReport()
    assert len(ledger_store.events("run-1")) == 2


def test_replay_appends_in_emission_order(tmp_path: Path, ledger_store: RunEventStore) -> None:
    spool = Spool(tmp_path / "spool")
    steps = [f"s{i}" for i in range(6)]
    for i, step in enumerate(steps):
        spool.put(started("run-1", step, at=T0 - dt.timedelta(seconds=i)))  # names sort the other way
    assert spool.replay(ledger_store).replayed == 6
    assert [e.event.identity.step_id for e in ledger_store.events("run-1")] == steps[::-1]


def test_bad_files_are_quarantined_with_a_reason_and_the_replay_goes_on(
    tmp_path: Path, ledger_store: RunEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool")
    good = started("run-1", "good")
    spool.put(good)
    edited = started("run-1", "edited")
    edited_doc = event_to_json(edited) | {"stepId": "tampered"}
    renamed = started("run-1", "renamed")
    nan = started("run-1", "nan")  # json.loads reads NaN; the ledger stores strict JSON only
    bad: dict[str, bytes] = {
        "truncated.json": b'{"format": "metric_platform.new_event/1", "runId": "ru',
        "not-utf8.json": b"\xff\xfe\x00garbage",
        "wrong-shape.json": json.dumps({"hello": "world"}).encode(),
        f"{edited.idempotency_key}.json": json.dumps(edited_doc).encode(),
        f"{'0' * 64}.json": json.dumps(event_to_json(renamed)).encode(),
        f"{nan.idempotency_key}.json": json.dumps(
            event_to_json(nan) | {"eventData": {"x": math.nan}}
        ).encode(),
    }
    for name, content in bad.items():
        (spool.directory / name).write_bytes(content)

    with caplog.at_level(logging.WARNING, logger="metric_platform.ledger.spool"):
        report = spool.replay(ledger_store)
    assert report == ReplayReport(replayed=1, quarantined=6)
    assert [e.event.identity.step_id for e in ledger_store.events("run-1")] == ["good"]
    corrupt = spool.directory / CORRUPT_DIR
    assert sorted(p.name for p in corrupt.glob("*.json")) == sorted(bad)
    reasons = {p.name.removesuffix(".reason.txt"): p.read_text() for p in corrupt.glob("*.reason.txt")}
    assert set(reasons) == set(bad)
    assert "Expecting" in reasons["truncated.json"] or "Unterminated" in reasons["truncated.json"]
    assert "utf-8" in reasons["not-utf8.json"]
    assert "format is None" in reasons["wrong-shape.json"]
    assert "the document was edited" in reasons[f"{edited.idempotency_key}.json"]
    assert "holds the event with key" in reasons[f"{'0' * 64}.json"]
    assert "not strict JSON" in reasons[f"{nan.idempotency_key}.json"]
    assert caplog.text.count("moved to") == 6
    assert spool.pending() == []
    assert spool.replay(ledger_store) == ReplayReport()


def test_an_event_that_conflicts_with_the_ledger_is_quarantined(
    tmp_path: Path, ledger_store: RunEventStore
) -> None:
    spool = Spool(tmp_path / "spool")
    event = started("run-1", "a")
    ledger_store.append(NewEvent(identity=event.identity, event_type=event.event_type, data={"other": 1}))
    spool.put(event)
    assert spool.replay(ledger_store) == ReplayReport(quarantined=1)
    [reason] = (spool.directory / CORRUPT_DIR).glob("*.reason.txt")
    assert "conflicts with the event stored under its key" in reason.read_text()


def test_a_replay_against_a_down_ledger_stops_and_keeps_every_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for step in ("a", "b", "c"):
        spool.put(started("run-1", step))
    store = down_store()
    assert spool.replay(store, timeout_ms=50) == ReplayReport(failed=1, remaining=3)
    assert store.calls == 1  # one refusal is enough: the others would wait out the same timeout


def test_concurrent_replays_append_each_event_once(tmp_path: Path, ledger_store: RunEventStore) -> None:
    spool = Spool(tmp_path / "spool")
    for i in range(30):
        spool.put(started(f"run-{i % 3}", f"s{i}", at=T0 + dt.timedelta(seconds=i)))
    reports: list[ReplayReport] = []
    barrier = threading.Barrier(3)

    def replay() -> None:
        barrier.wait()
        reports.append(spool.replay(ledger_store))

    threads = [threading.Thread(target=replay) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.replayed for r in reports) == 30
    assert sum(r.failed + r.quarantined for r in reports) == 0
    assert sum(len(ledger_store.events(f"run-{i}")) for i in range(3)) == 30
    assert spool.pending() == []


def test_a_dry_run_spools_and_replays_nothing(tmp_path: Path, ledger_store: RunEventStore) -> None:
    spool = Spool(tmp_path / "spool")
    with write_guard.dry_run() as suppressed:
        assert spool.put(started("run-1", "a")) is None
    assert not spool.directory.exists()
    spool.put(started("run-1", "b"))
    with write_guard.dry_run() as suppressed:
        assert spool.replay(ledger_store) == ReplayReport(remaining=1)
    assert suppressed is not None and suppressed.counts["ledger.spool.replay"] == 1
    assert len(spool.pending()) == 1
    assert ledger_store.run_ids() == []


def test_a_disk_that_refuses_the_write_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "spool"
    blocker.write_text("a file where the spool directory should be")
    with pytest.raises(StorageError, match="could not spool ledger event StepStarted of run 'run-1'"):
        Spool(blocker).put(started("run-1", "a"))


def test_a_dead_writers_temp_file_is_cleaned_up_and_a_live_ones_is_kept(
    tmp_path: Path, ledger_store: RunEventStore
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.put(started("run-1", "a"))
    stale = spool.directory / ".abc.0123.tmp"
    fresh = spool.directory / ".def.4567.tmp"
    stale.write_text("{")
    fresh.write_text("{")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert spool.replay(ledger_store) == ReplayReport(replayed=1)
    assert not stale.exists() and fresh.exists()


# -- failures: transient ones stop the replay, permanent ones are quarantined ---------------------


def _write_around_the_allocator(store: RunEventStore, run_id: str) -> None:
    """Give ``run_id`` a row at its next runSeq that the store did not allocate: every append to
    the run then fails with an IntegrityError, for good."""
    store.append(started(run_id, "first"))
    with store.engine.connect() as conn:
        row = dict(conn.execute(sa.select(run_events).where(run_events.c.run_id == run_id)).mappings().one())
    row.update(run_seq=2, idempotency_key="f" * 64, event_id=uuid.uuid4(), position=10_000)
    with write_transaction(store.engine) as conn:
        conn.execute(sa.insert(run_events).values(row))


def test_a_file_the_ledger_refuses_for_good_is_quarantined_and_the_files_after_it_replay(
    tmp_path: Path, ledger_store: RunEventStore
) -> None:
    _write_around_the_allocator(ledger_store, "run-broken")
    spool = Spool(tmp_path / "spool")
    refused = started("run-broken", "a")  # the oldest: replayed first
    later = [started(f"run-{i}", "b", at=T0 + dt.timedelta(seconds=i)) for i in (1, 2)]
    for event in (refused, *later):
        spool.put(event)

    assert spool.replay(ledger_store, timeout_ms=2000) == ReplayReport(replayed=2, quarantined=1)
    assert all(ledger_store.get(e.identity.run_id, e.idempotency_key) for e in later)
    [reason] = (spool.directory / CORRUPT_DIR).glob("*.reason.txt")
    assert reason.name.startswith(refused.idempotency_key)
    assert "the ledger refuses this event" in reason.read_text()
    assert spool.pending() == [] and not spool.has_pending()


@pytest.mark.postgres
@pytest.mark.parametrize("empty_db_url", ["postgres"], indirect=True)
def test_postgresql_refusing_a_nul_character_does_not_block_the_spool(
    tmp_path: Path, ledger_store: RunEventStore
) -> None:
    spool = Spool(tmp_path / "spool")
    in_jsonb = NewEvent(  # JSONB has no \u0000
        EventIdentity("run-1", "a", plan_version="p1"),
        EventType.STEP_STARTED,
        {"note": "a\x00b"},
        emitted_at=T0,
    )
    in_text = started("run-1", "b\x00", at=T0 + dt.timedelta(seconds=1))  # nor has a text column
    good = started("run-1", "c", at=T0 + dt.timedelta(seconds=2))
    for event in (in_jsonb, in_text, good):
        spool.put(event)
    assert spool.replay(ledger_store) == ReplayReport(replayed=1, quarantined=2)
    assert [e.event.identity.step_id for e in ledger_store.events("run-1")] == ["c"]
    reasons = [p.read_text() for p in (spool.directory / CORRUPT_DIR).glob("*.reason.txt")]
    assert len(reasons) == 2 and all("NUL" in r or "Unicode escape" in r for r in reasons), reasons


def test_a_locked_ledger_stops_the_replay_at_the_first_timeout_and_keeps_every_file(
    tmp_path: Path, ledger_store: RunEventStore
) -> None:
    spool = Spool(tmp_path / "spool")
    for i, step in enumerate(("a", "b", "c")):
        spool.put(started("run-1", step, at=T0 + dt.timedelta(seconds=i)))
    with write_transaction(ledger_store.engine) as holder:  # run-1 (the whole file on SQLite) held
        ledger_store.append_in(holder, started("run-1", "held"))
        started_at = time.monotonic()
        report = spool.replay(ledger_store, timeout_ms=200)
        waited = time.monotonic() - started_at
    assert report == ReplayReport(failed=1, remaining=3)
    assert waited < 2, f"the replay waited {waited:.1f}s: it should stop at the first timeout"
    assert spool.replay(ledger_store, timeout_ms=2000) == ReplayReport(replayed=3)


def test_an_unclassified_storage_error_keeps_the_file_and_tries_the_next(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for step in ("a", "b", "c"):
        spool.put(started("run-1", step))
    missing = sqlite3.ProgrammingError("no such table: ledger_run_events")
    store = FailingStore(_storage_error(_sa_error(sa.exc.ProgrammingError, missing)))
    assert spool.replay(store) == ReplayReport(failed=3, remaining=3)
    assert store.calls == 3 and not (spool.directory / CORRUPT_DIR).exists()


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        (_sa_error(sa.exc.OperationalError, sqlite3.OperationalError("database is locked")), "transient"),
        (_sa_error(sa.exc.OperationalError, psycopg.errors.QueryCanceled()), "transient"),
        (_sa_error(sa.exc.DBAPIError, psycopg.errors.LockNotAvailable()), "transient"),
        (_sa_error(sa.exc.DBAPIError, psycopg.errors.DeadlockDetected()), "transient"),
        (_sa_error(sa.exc.InterfaceError, psycopg.InterfaceError("the connection is closed")), "transient"),
        (_sa_error(sa.exc.DataError, psycopg.errors.UntranslatableCharacter()), "permanent"),
        (_sa_error(sa.exc.DBAPIError, psycopg.DataError("text fields cannot contain NUL")), "permanent"),
        (_sa_error(sa.exc.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed")), "permanent"),
        (_sa_error(sa.exc.ProgrammingError, psycopg.errors.UndefinedTable()), "unknown"),
        (OSError("disk full"), "unknown"),
    ],
)
def test_failure_kind_reads_the_driver_error_behind_the_storage_error(
    cause: BaseException, kind: str
) -> None:
    assert failure_kind(_storage_error(cause)) is FailureKind(kind)


def test_a_lost_connection_is_transient_whatever_the_driver_said() -> None:
    lost = sa.exc.DBAPIError("SELECT 1", {}, psycopg.DataError("x"), connection_invalidated=True)
    assert failure_kind(_storage_error(lost)) is FailureKind.TRANSIENT
    assert failure_kind(StorageError("no cause")) is FailureKind.UNKNOWN


def test_has_pending_is_cheap_and_creates_nothing(tmp_path: Path, ledger_store: RunEventStore) -> None:
    spool = Spool(tmp_path / "spool")
    assert not spool.has_pending() and not spool.directory.exists()
    spool.put(started("run-1", "a"))
    assert spool.has_pending()
    spool.replay(ledger_store)
    (spool.directory / CORRUPT_DIR).mkdir()
    (spool.directory / CORRUPT_DIR / f"{'1' * 64}.json").write_text("{")
    (spool.directory / ".abc.0123.tmp").write_text("{")
    assert not spool.has_pending() and spool.pending() == []
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert not Spool(blocker).has_pending()
