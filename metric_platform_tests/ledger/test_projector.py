"""The projector against the platform database (SQLite file and PostgreSQL): it matches a clean
fold, halts one run on a gap, alerts on lag, survives a failed commit, and writes nothing dry."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from metric_platform import write_guard
from metric_platform.db import read_transaction, write_transaction
from metric_platform.errors import StorageError
from metric_platform.ledger.alerts import ALERT_TOPIC, AlertCode, ProjectorAlert, Severity
from metric_platform.ledger.events import EventType, NewEvent
from metric_platform.ledger.projection import RunStatus, StepStatus
from metric_platform.ledger.projector import HaltedRun, Projector, Watermark, load_snapshot
from metric_platform.ledger.schema import projector_state, run_snapshots
from metric_platform.ledger.store import RunEventStore
from metric_platform_tests.ledger._projector_support import (
    artifact,
    clean_fold,
    delete_raw,
    insert_raw,
    new_event,
    outbox_alerts,
    stored_snapshots,
)

E = EventType


@pytest.fixture
def engine(ledger_store: RunEventStore) -> Engine:
    return ledger_store.engine


def a_run(run_id: str, steps: int = 3) -> list[NewEvent]:
    events = [
        new_event(run_id, E.RUN_APPROVED),
        new_event(run_id, E.RUN_STARTED, engine_run_ref={"d": run_id}),
    ]
    for i in range(steps):
        step = f"step-{i}"
        events.append(new_event(run_id, E.STEP_STARTED, step=step))
        data = {"artifacts": [artifact(f"s3://{run_id}/{i}")]}
        events.append(new_event(run_id, E.STEP_COMPLETED, step=step, data=data))
    return events


def append_all(store: RunEventStore, events: list[NewEvent]) -> None:
    for event in events:
        store.append(event)


def assert_matches_clean_fold(store: RunEventStore, run_ids: list[str]) -> None:
    for run_id in run_ids:
        expected = clean_fold(store, run_id)
        assert load_snapshot(store.engine, run_id) == expected, run_id
        assert expected.events_applied == len(store.events(run_id))


def test_polls_fold_every_run_exactly_once(ledger_store: RunEventStore, engine: Engine) -> None:
    runs = ["run-a", "run-b", "run-c"]
    for r in runs:
        append_all(ledger_store, a_run(r)[:4])
    projector = Projector(engine, batch_size=3)  # several batches, one transaction each
    report = projector.poll()
    assert report.applied == 12
    assert report.runs_updated == tuple(runs)
    assert (report.halted_runs, report.alerts) == ((), ())
    assert_matches_clean_fold(ledger_store, runs)

    for r in runs:
        append_all(ledger_store, a_run(r)[4:])
    append_all(ledger_store, [new_event("run-a", E.RUN_COMPLETED)])
    assert projector.poll().applied == 3 * 4 + 1
    assert_matches_clean_fold(ledger_store, runs)
    final = load_snapshot(engine, "run-a")
    assert final is not None
    assert final.status is RunStatus.COMPLETED
    assert len(final.artifacts) == 3

    again = Projector(engine).poll()  # a restarted projector re-applies nothing
    assert (again.applied, again.runs_updated) == (0, ())
    assert_matches_clean_fold(ledger_store, runs)
    if engine.dialect.name == "sqlite":  # on PostgreSQL other sessions may hold xmin back
        last = max(e.position for r in runs for e in ledger_store.events(r))
        assert again.watermark == Watermark(0, last)
    assert load_snapshot(engine, "never-seen") is None


def test_late_step_started_does_not_regress_a_finished_step(
    ledger_store: RunEventStore, engine: Engine
) -> None:
    append_all(ledger_store, a_run("late", steps=0))
    done = new_event(
        "late", E.STEP_COMPLETED, step="s", engine=1, at=dt.datetime(2026, 3, 1, 12, 5, tzinfo=dt.UTC)
    )
    ledger_store.append(done)
    projector = Projector(engine)
    projector.poll()
    # The StepStarted failed open to the spool and is replayed after the outcome was recorded.
    ledger_store.append(
        new_event("late", E.STEP_STARTED, step="s", at=dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    )
    projector.poll()
    snap = load_snapshot(engine, "late")
    assert snap is not None
    step = snap.step("s")
    assert step is not None
    assert (step.status, step.engine_attempt_id) == (StepStatus.SUCCESS, 1)
    assert step.started_at == dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    assert snap == clean_fold(ledger_store, "late")


class Clock:
    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


def test_lag_alert_fires_when_events_wait_longer_than_the_threshold(
    ledger_store: RunEventStore, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    projector = Projector(engine, clock=clock)
    append_all(ledger_store, a_run("fresh", steps=1))
    fresh = projector.poll()
    assert fresh.lag_seconds < 5
    assert fresh.alerts == ()

    append_all(ledger_store, a_run("stale", steps=1))
    clock.offset = dt.timedelta(seconds=6)  # the events waited 6 s for this poll
    with caplog.at_level(logging.WARNING, logger="metric_platform.ledger.projector"):
        report = projector.poll()
    assert 6 <= report.lag_seconds < 8
    (alert,) = report.alerts
    assert (alert.code, alert.severity, alert.projector) == (
        AlertCode.PROJECTOR_LAG_HIGH,
        Severity.P2,
        "default",
    )
    assert "PROJECTOR_LAG_HIGH" in caplog.text
    stored = outbox_alerts(engine)
    assert [(a["key"], a["code"], a["severity"]) for a in stored] == [(alert.key, "PROJECTOR_LAG_HIGH", "P2")]
    assert Projector(engine, clock=clock).poll().alerts == ()  # nothing waiting any more


def test_a_gap_halts_only_its_run_until_it_closes(ledger_store: RunEventStore, engine: Engine) -> None:
    append_all(ledger_store, a_run("gappy", steps=1) + a_run("steady", steps=1))
    projector = Projector(engine)
    projector.poll()
    missing = new_event("gappy", E.STEP_STARTED, step="retry", attempt=2)
    after_gap = new_event("gappy", E.STEP_COMPLETED, step="retry", attempt=2)
    insert_raw(engine, after_gap, 6)  # runSeq 5 was never written: a hole
    append_all(ledger_store, [new_event("steady", E.STEP_STARTED, step="more")])

    report = projector.poll()
    assert report.halted_runs == (HaltedRun("gappy", expected_seq=5, found_seq=6),)
    (alert,) = report.alerts
    assert (alert.code, alert.severity, alert.run_id, alert.expected_seq, alert.found_seq) == (
        AlertCode.PROJECTOR_GAP_DETECTED,
        Severity.P1,
        "gappy",
        5,
        6,
    )
    assert [a["key"] for a in outbox_alerts(engine)] == [alert.key]
    rows = stored_snapshots(engine)
    assert rows["gappy"][1] == 5  # halted_at_seq
    assert rows["gappy"][0].last_event_seq == 4
    assert rows["steady"] == (clean_fold(ledger_store, "steady"), None)  # the other run went on

    append_all(ledger_store, [new_event("steady", E.STEP_COMPLETED, step="more")])
    still = projector.poll()
    assert still.halted_runs == (HaltedRun("gappy", 5, 6),)
    assert still.alerts == ()  # raised once, not on every poll
    assert stored_snapshots(engine)["steady"][0] == clean_fold(ledger_store, "steady")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    waiting = Projector(engine, clock=lambda: later).poll()  # the halted run's events still wait
    assert (waiting.applied, waiting.lag_seconds >= 29) == (0, True)
    assert [a.code for a in waiting.alerts] == [AlertCode.PROJECTOR_LAG_HIGH]

    insert_raw(engine, missing, 5)  # the gap closes
    resumed = projector.poll()
    assert resumed.halted_runs == ()
    assert resumed.applied == 2
    assert stored_snapshots(engine)["gappy"] == (clean_fold(ledger_store, "gappy"), None)
    step = clean_fold(ledger_store, "gappy").step("retry")
    assert step is not None
    assert (step.status, step.logical_attempt_id) == (StepStatus.SUCCESS, 2)


def test_a_deleted_event_halts_a_new_run_and_reinserting_it_resumes(
    ledger_store: RunEventStore, engine: Engine
) -> None:
    events = a_run("holey", steps=2)
    append_all(ledger_store, events)
    delete_raw(engine, "holey", 3)
    report = Projector(engine).poll()
    assert report.halted_runs == (HaltedRun("holey", 3, 4),)
    assert stored_snapshots(engine)["holey"][0].last_event_seq == 2
    insert_raw(engine, events[2], 3)
    assert Projector(engine).poll().applied == 4
    assert stored_snapshots(engine)["holey"] == (clean_fold(ledger_store, "holey"), None)

    append_all(ledger_store, a_run("headless", steps=0))
    delete_raw(engine, "headless", 1)
    first = Projector(engine).poll()
    assert first.halted_runs == (HaltedRun("headless", 1, 2),)
    headless = load_snapshot(engine, "headless")
    assert headless is not None
    assert (headless.status, headless.events_applied) == (RunStatus.PENDING, 0)


def test_a_failed_commit_leaves_nothing_and_the_next_poll_applies_once(
    ledger_store: RunEventStore, engine: Engine
) -> None:
    append_all(ledger_store, a_run("crashy"))
    insert_raw(engine, new_event("crashy", E.RUN_COMPLETED), 10)  # and a gap, to have an alert

    def crash() -> None:
        raise RuntimeError("killed between the snapshot write and the commit")

    with pytest.raises(RuntimeError, match="killed"):
        Projector(engine, before_commit=crash, batch_size=2).poll()
    with read_transaction(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(run_snapshots)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(projector_state)).scalar_one() == 0
    assert outbox_alerts(engine) == []

    report = Projector(engine).poll()
    assert report.applied == 8
    assert len(report.alerts) == 1
    assert len(outbox_alerts(engine)) == 1
    assert stored_snapshots(engine)["crashy"] == (clean_fold(ledger_store, "crashy", through=8), 9)


def test_dry_run_computes_the_report_and_writes_nothing(ledger_store: RunEventStore, engine: Engine) -> None:
    append_all(ledger_store, a_run("dry-a") + a_run("dry-b"))
    insert_raw(engine, new_event("dry-b", E.RUN_COMPLETED), 10)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
    with write_guard.dry_run() as suppressed:
        report = Projector(engine, batch_size=3, clock=lambda: later).poll()
    assert report.dry_run
    assert report.applied == 16
    assert report.runs_updated == ("dry-a", "dry-b")
    assert report.halted_runs == (HaltedRun("dry-b", 9, 10),)
    assert {a.code for a in report.alerts} == {AlertCode.PROJECTOR_GAP_DETECTED, AlertCode.PROJECTOR_LAG_HIGH}
    assert suppressed is not None
    assert suppressed.counts["ledger.project"] == 1
    assert stored_snapshots(engine) == {}
    assert outbox_alerts(engine) == []
    with read_transaction(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(projector_state)).scalar_one() == 0

    real = Projector(engine, batch_size=3, clock=lambda: later).poll()
    assert (real.applied, real.runs_updated, real.halted_runs) == (
        16,
        report.runs_updated,
        report.halted_runs,
    )
    assert [a.key for a in real.alerts] == [a.key for a in report.alerts]


def test_a_corrupt_snapshot_row_is_rebuilt_from_the_log(ledger_store: RunEventStore, engine: Engine) -> None:
    append_all(ledger_store, a_run("corrupt"))
    projector = Projector(engine)
    projector.poll()
    with write_transaction(engine) as conn:
        conn.execute(sa.update(run_snapshots).values(snapshot={"v": 99}))
    with pytest.raises(StorageError, match="unreadable"):
        load_snapshot(engine, "corrupt")
    append_all(ledger_store, [new_event("corrupt", E.RUN_COMPLETED)])
    projector.poll()
    assert load_snapshot(engine, "corrupt") == clean_fold(ledger_store, "corrupt")


def test_alert_keys_are_deterministic_and_short() -> None:
    now = dt.datetime(2026, 3, 1, 12, 0, 5, tzinfo=dt.UTC)
    gap = ProjectorAlert.gap(projector="p", run_id="r" * 255, expected=3, found=5, detected_at=now)
    later = ProjectorAlert.gap(
        projector="p", run_id="r" * 255, expected=3, found=7, detected_at=now + dt.timedelta(hours=1)
    )
    assert gap.key == later.key
    assert len(gap.key) <= 128
    assert gap.key != ProjectorAlert.gap(projector="p", run_id="r", expected=4, found=5, detected_at=now).key
    lag = ProjectorAlert.lag(projector="p", lag_seconds=6, threshold_s=5, detected_at=now)
    same_minute = ProjectorAlert.lag(
        projector="p", lag_seconds=9, threshold_s=5, detected_at=now + dt.timedelta(seconds=50)
    )
    next_minute = ProjectorAlert.lag(
        projector="p", lag_seconds=9, threshold_s=5, detected_at=now + dt.timedelta(seconds=60)
    )
    assert lag.key == same_minute.key != next_minute.key
    message = gap.to_outbox()
    assert (message.topic, message.key, message.payload["expectedSeq"]) == (ALERT_TOPIC, gap.key, 3)
