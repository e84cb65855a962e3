"""Retention deletes whole finished runs only (events, snapshot, run row), whatever late events
follow their end, respects the write guard, keeps SQLite's newest position, skips runs another
transaction holds, and on PostgreSQL drops the month partitions it empties."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from metric_platform import write_guard
from metric_platform.db import create_db_engine, write_transaction
from metric_platform.ledger import partitions, retention
from metric_platform.ledger.events import EventType
from metric_platform.ledger.retention import RunSummary, decide, prune_runs
from metric_platform.ledger.schema import run_events, run_snapshots, runs
from metric_platform.ledger.store import RunEventStore
from metric_platform_tests.ledger._store_support import run_event, step_event

OLD = dt.datetime(2026, 2, 10, 12, 0, tzinfo=dt.UTC)
NEW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)
BEFORE = dt.date(2026, 3, 1)


def _summary(
    run_id: str, created: dt.datetime, attempts: tuple[int | None, int | None], position: int = 1
) -> RunSummary:
    """``attempts``: (highest logical attempt of any Run* event, highest of a terminal one)."""
    return RunSummary(run_id, created.date().replace(day=1), created, 3, *attempts, position)


def test_decide_prunes_runs_whose_newest_attempt_ended_and_keeps_the_rest() -> None:
    candidates = [
        _summary("done", OLD, (1, 1), 1),
        _summary("done-on-retry", OLD, (3, 3), 2),
        _summary("re-executed", OLD, (2, 1), 3),  # attempt 2 started, only attempt 1 ended
        _summary("running", OLD, (1, None), 4),
        _summary("empty", OLD, (None, None), 5),
        _summary("recent", NEW, (1, 1), 6),
        _summary("newest", OLD, (1, 1), 7),
        _summary("at-cutoff", dt.datetime(2026, 3, 1, tzinfo=dt.UTC), (1, 1), 0),
    ]
    decision = decide(candidates, before=BEFORE, newest_position=7)
    assert [run.run_id for run in decision.prune] == ["done", "done-on-retry"]
    assert decision.kept_unfinished == ("empty", "re-executed", "running")
    assert decision.kept_newest == ("newest",)
    no_reuse_risk = decide(candidates, before=BEFORE, newest_position=None)
    assert [run.run_id for run in no_reuse_risk.prune] == ["done", "done-on-retry", "newest"]


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _populate(url: str, clock: Clock) -> None:
    """Old runs in every state, a recent finished run, and a recent running one (the newest position)."""
    with RunEventStore.open(url, clock=clock) as store:
        clock.now = OLD
        for run_id, last in [
            ("old-done", EventType.RUN_COMPLETED),
            ("old-failed", EventType.RUN_FAILED),
            ("old-cancelled", EventType.RUN_CANCELLED),
            ("old-running", None),
            ("old-late-step", EventType.RUN_COMPLETED),
            ("old-reexecuted", EventType.RUN_COMPLETED),
        ]:
            store.append(run_event(run_id, EventType.RUN_STARTED))
            store.append(step_event(run_id, "s1"))
            store.append(step_event(run_id, "s1", event_type=EventType.STEP_COMPLETED))
            if last is not None:
                store.append(run_event(run_id, last))
        # Its RunStarted failed open to the spool: the run ended without one so far.
        store.append(step_event("old-late-start", "s1"))
        store.append(run_event("old-late-start", EventType.RUN_COMPLETED))
        # Attempt 9 failed, attempt 10 runs: attempts compare as numbers ("9" > "10" as text).
        store.append(run_event("old-tenth-attempt", EventType.RUN_STARTED, logical=9))
        store.append(run_event("old-tenth-attempt", EventType.RUN_FAILED, logical=9))
        store.append(run_event("old-tenth-attempt", EventType.RUN_STARTED, logical=10))
        store.append(run_event("old-reexecuted-steps-first", EventType.RUN_STARTED))
        store.append(run_event("old-reexecuted-steps-first", EventType.RUN_FAILED))
        store.append(run_event("old-reexecuted-allocated", EventType.RUN_STARTED))
        store.append(run_event("old-reexecuted-allocated", EventType.RUN_COMPLETED))
        clock.now = NEW
        # Spool replays after the end: the latest event is not terminal, the runs are finished all the same.
        store.append(step_event("old-late-step", "s2"))
        store.append(run_event("old-late-start", EventType.RUN_STARTED))
        # A re-execution: a newer logical attempt started and has not ended.
        store.append(run_event("old-reexecuted", EventType.RUN_STARTED, logical=2))
        # A re-execution allocated its logical attempt; none of its events is recorded yet.
        store.attempt_for("old-reexecuted-allocated", "dagster-run-2")
        # A re-execution whose steps are recorded before the sensor records its RunStarted.
        store.append(step_event("old-reexecuted-steps-first", "s1", logical=2))
        store.append(
            step_event("old-reexecuted-steps-first", "s1", event_type=EventType.STEP_COMPLETED, logical=2)
        )
        store.append(run_event("new-done", EventType.RUN_STARTED))
        store.append(run_event("new-done", EventType.RUN_COMPLETED))
        store.append(run_event("new-running", EventType.RUN_STARTED))
        with write_transaction(store.engine) as conn:
            conn.execute(
                sa.insert(run_snapshots),
                [
                    {
                        "run_id": run_id,
                        "status": "COMPLETED",
                        "last_event_seq": 4,
                        "events_applied": 4,
                        "snapshot": {},
                        "projected_at": NEW,
                    }
                    for run_id in ("old-done", "old-running", "new-done")
                ],
            )


def _state(url: str) -> tuple[dict[str, int], set[str], set[str]]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            counts = {
                row.run_id: int(row.n)
                for row in conn.execute(
                    sa.select(run_events.c.run_id, sa.func.count().label("n")).group_by(run_events.c.run_id)
                )
            }
            run_rows = set(conn.execute(sa.select(runs.c.run_id)).scalars())
            snapshots = set(conn.execute(sa.select(run_snapshots.c.run_id)).scalars())
    finally:
        engine.dispose()
    return counts, run_rows, snapshots


def test_prune_deletes_whole_finished_runs_and_nothing_else(platform_url: str) -> None:
    _populate(platform_url, Clock(OLD))
    counts_before, _, _ = _state(platform_url)
    engine = create_db_engine(platform_url)
    try:
        report = prune_runs(engine, before=BEFORE, now=NEW)
    finally:
        engine.dispose()

    gone = {"old-done", "old-failed", "old-cancelled", "old-late-step", "old-late-start"}
    assert report.runs_deleted == 5 and report.snapshots_deleted == 1 and not report.dry_run
    assert report.events_deleted == sum(counts_before[r] for r in gone) == 4 + 4 + 4 + 5 + 3
    assert report.kept_unfinished == (
        "old-reexecuted",
        "old-reexecuted-allocated",
        "old-reexecuted-steps-first",
        "old-running",
        "old-tenth-attempt",
    )
    assert report.kept_newest == report.kept_busy == ()
    counts, run_rows, snapshots = _state(platform_url)
    assert run_rows == set(counts_before) - gone == set(counts)
    assert counts == {r: n for r, n in counts_before.items() if r not in gone}, "kept runs are whole"
    assert snapshots == {"old-running", "new-done"}
    with RunEventStore.open(platform_url) as store:
        assert [e.run_seq for e in store.events("old-reexecuted")] == [1, 2, 3, 4, 5]

    engine = create_db_engine(platform_url)
    try:
        again = prune_runs(engine, before=BEFORE, now=NEW)
    finally:
        engine.dispose()
    assert (again.runs_deleted, again.events_deleted) == (0, 0)


def test_prune_in_a_dry_run_reports_and_writes_nothing(platform_url: str) -> None:
    _populate(platform_url, Clock(OLD))
    before = _state(platform_url)
    engine = create_db_engine(platform_url)
    try:
        with write_guard.dry_run() as suppressed:
            report = prune_runs(engine, before=BEFORE, now=NEW)
    finally:
        engine.dispose()
    assert report.dry_run and (report.runs_deleted, report.events_deleted) == (5, 20)
    assert suppressed is not None and suppressed.counts == {"ledger.prune": 5}
    assert _state(platform_url) == before


def test_a_run_re_executed_between_the_read_and_the_delete_is_kept(
    platform_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _populate(platform_url, Clock(OLD))
    real_permit: Callable[[str, int], bool] = write_guard.permit

    def permit_after_late_events(what: str, n: int = 1) -> bool:
        # Retention asks once, between reading its candidates and deleting them.
        if what == retention.WRITE_KIND:
            with RunEventStore.open(platform_url, clock=Clock(NEW)) as store:
                store.append(step_event("old-failed", "late"))  # late, but no new attempt
                store.append(run_event("old-done", EventType.RUN_STARTED, logical=2))
        return real_permit(what, n)

    monkeypatch.setattr(write_guard, "permit", permit_after_late_events)
    engine = create_db_engine(platform_url)
    try:
        report = prune_runs(engine, before=BEFORE, now=NEW)
    finally:
        engine.dispose()
    assert report.runs_deleted == 4 and report.events_deleted == 20 - 4 + 1
    counts, run_rows, _ = _state(platform_url)
    assert counts["old-done"] == 5 and "old-done" in run_rows
    assert "old-failed" not in run_rows and "old-failed" not in counts


@pytest.mark.postgres
@pytest.mark.parametrize("empty_db_url", ["postgres"], indirect=True)
def test_a_run_another_transaction_holds_is_skipped_not_waited_for(platform_url: str) -> None:
    _populate(platform_url, Clock(OLD))
    engine = create_db_engine(platform_url)
    try:
        reports: list[retention.PruneReport] = []
        with write_transaction(engine) as holder:  # an append to old-done in flight
            RunEventStore(engine).append_in(holder, step_event("old-done", "late"), now=NEW)
            # In a thread, so that a retention waiting for the holder fails the test, not hangs it.
            pruner = threading.Thread(
                target=lambda: reports.append(prune_runs(engine, before=BEFORE, now=dt.datetime.now(dt.UTC)))
            )
            started = time.monotonic()
            pruner.start()
            pruner.join(timeout=5)
            waited = time.monotonic() - started
        pruner.join()
        assert waited < 2, f"retention waited {waited:.1f}s for a run row another transaction holds"
        (report,) = reports
        assert report.kept_busy == ("old-done",) and report.runs_deleted == 4
        counts, run_rows, _ = _state(platform_url)
        assert counts["old-done"] == 5 and "old-done" in run_rows
        assert prune_runs(engine, before=BEFORE, now=dt.datetime.now(dt.UTC)).runs_deleted == 1
    finally:
        engine.dispose()


def test_sqlite_keeps_the_run_holding_the_newest_position_until_a_newer_event_exists(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/platform.sqlite"
    with RunEventStore.open(url, clock=Clock(OLD)) as store:
        store.append(run_event("a", EventType.RUN_COMPLETED))
        last = store.append(run_event("b", EventType.RUN_COMPLETED)).event
        assert last is not None
        report = prune_runs(store.engine, before=BEFORE, now=NEW)
        assert (report.runs_deleted, report.kept_newest) == (1, ("b",))
        store._clock = Clock(NEW)
        after = store.append(run_event("c", EventType.RUN_STARTED)).event
        assert after is not None and after.position == last.position + 1, "no position reused"
        assert prune_runs(store.engine, before=BEFORE, now=NEW).runs_deleted == 1
        assert store.run_ids() == ["c"]


@pytest.mark.postgres
def test_prune_drops_the_month_partitions_it_empties_and_adds_the_coming_ones(pg_platform_url: str) -> None:
    engine = create_db_engine(pg_platform_url)
    june, july = dt.date(2025, 6, 1), dt.date(2025, 7, 1)
    try:
        with write_transaction(engine) as conn:
            partitions.ensure_partitions(conn, july, today=june)
        with RunEventStore(engine, clock=Clock(dt.datetime(2025, 6, 5, tzinfo=dt.UTC))) as store:
            store.append(run_event("june-done", EventType.RUN_COMPLETED))
            store._clock = Clock(dt.datetime(2025, 7, 5, tzinfo=dt.UTC))
            store.append(run_event("july-running", EventType.RUN_STARTED))
            store.append(run_event("july-done", EventType.RUN_COMPLETED))
        with engine.connect() as conn:
            homes = conn.execute(
                sa.text("SELECT run_id, tableoid::regclass::text FROM ledger_run_events ORDER BY run_id")
            ).all()
        assert [tuple(h) for h in homes] == [
            ("july-done", partitions.partition_name(july)),
            ("july-running", partitions.partition_name(july)),
            ("june-done", partitions.partition_name(june)),
        ]

        now = dt.datetime(2025, 8, 15, tzinfo=dt.UTC)
        report = prune_runs(engine, before=dt.date(2025, 8, 1), now=now)
        assert report.runs_deleted == 2 and report.kept_unfinished == ("july-running",)
        assert report.partitions_dropped == (partitions.partition_name(june),)
        assert report.partitions_created == tuple(
            partitions.partition_name(dt.date(2025, m, 1)) for m in (8, 9, 10)
        )
        with engine.connect() as conn:
            existing = set(partitions.existing_partitions(conn))
        assert partitions.partition_name(july) in existing and partitions.partition_name(june) not in existing
    finally:
        engine.dispose()
