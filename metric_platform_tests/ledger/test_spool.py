"""The fail-open spool: atomic, idempotent files; replays that append once and survive bad files."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from metric_platform import write_guard
from metric_platform.errors import StorageError
from metric_platform.ledger.codec import event_from_json, event_to_json
from metric_platform.ledger.events import EventIdentity, EventType, NewEvent
from metric_platform.ledger.spool import CORRUPT_DIR, ReplayReport, Spool
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


class DownStore:
    """A ledger whose database is unreachable."""

    def __init__(self) -> None:
        self.calls = 0

    def append(self, event: NewEvent, *, timeout_ms: int | None = None) -> AppendResult:
        self.calls += 1
        msg = "write transaction on postgresql://db/ledger failed: connection refused"
        raise StorageError(msg)


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
    bad: dict[str, bytes] = {
        "truncated.json": b'{"format": "metric_platform.new_event/1", "runId": "ru',
        "not-utf8.json": b"\xff\xfe\x00garbage",
        "wrong-shape.json": json.dumps({"hello": "world"}).encode(),
        f"{edited.idempotency_key}.json": json.dumps(edited_doc).encode(),
        f"{'0' * 64}.json": json.dumps(event_to_json(renamed)).encode(),
    }
    for name, content in bad.items():
        (spool.directory / name).write_bytes(content)

    with caplog.at_level(logging.WARNING, logger="metric_platform.ledger.spool"):
        report = spool.replay(ledger_store)
    assert report == ReplayReport(replayed=1, quarantined=5)
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
    assert caplog.text.count("moved to") == 5
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
    store = DownStore()
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
