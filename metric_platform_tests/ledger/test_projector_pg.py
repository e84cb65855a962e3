"""PostgreSQL: a transaction that appended early and commits late is never passed by the projector
(the Marten #1629 / #3321 failure of position-only watermarks), while other runs keep projecting;
and retention interleaved with a projector batch never leaves a snapshot without its run."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from metric_platform.db import write_transaction
from metric_platform.ledger.events import EventType
from metric_platform.ledger.projector import Projector, Watermark, load_snapshot
from metric_platform.ledger.retention import PruneReport, prune_runs
from metric_platform.ledger.schema import run_snapshots, runs
from metric_platform.ledger.store import RunEventStore
from metric_platform_tests.ledger._projector_support import clean_fold, new_event

E = EventType

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("empty_db_url", ["postgres"], indirect=True)]


def test_an_uncommitted_append_is_never_passed(ledger_store: RunEventStore) -> None:
    engine = ledger_store.engine
    for event in (
        new_event("A", E.RUN_STARTED),
        new_event("A", E.STEP_STARTED),
        new_event("B", E.RUN_STARTED),
    ):
        ledger_store.append(event)
    projector = Projector(engine, batch_size=2)
    projector.poll()
    before = load_snapshot(engine, "A")
    assert before is not None
    assert before.last_event_seq == 2

    with write_transaction(engine) as held:
        # A's next events get their positions now, before B's and C's, and commit after them.
        first = ledger_store.append_in(held, new_event("A", E.STEP_COMPLETED)).event
        ledger_store.append_in(held, new_event("A", E.RUN_COMPLETED))
        assert first is not None
        held_tx = int(held.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one())
        held_mark = Watermark(held_tx, first.position)

        for event in (
            new_event("B", E.STEP_STARTED),
            new_event("B", E.STEP_COMPLETED),
            new_event("C", E.RUN_STARTED),
            new_event("C", E.RUN_CANCELLED),
        ):
            ledger_store.append(event)
        report = projector.poll()
        assert report.runs_updated == ("B", "C")
        assert report.applied == 4
        assert report.watermark < held_mark
        assert load_snapshot(engine, "A") == before  # untouched while its append is open
        assert load_snapshot(engine, "B") == clean_fold(ledger_store, "B")
        assert load_snapshot(engine, "C") == clean_fold(ledger_store, "C")

        ledger_store.append(new_event("B", E.RUN_COMPLETED))
        again = projector.poll()
        assert (again.applied, again.runs_updated) == (1, ("B",))  # re-read rows are skipped
        assert again.watermark < held_mark
        assert load_snapshot(engine, "A") == before

    after = projector.poll()
    assert (after.applied, after.runs_updated) == (2, ("A",))
    final = load_snapshot(engine, "A")
    assert final == clean_fold(ledger_store, "A")
    assert final is not None
    assert (final.last_event_seq, final.events_applied) == (4, 4)
    for run_id in ("B", "C"):
        assert load_snapshot(engine, run_id) == clean_fold(ledger_store, run_id)
    with engine.connect() as conn:
        applied = conn.execute(sa.text("SELECT sum(events_applied) FROM ledger_run_snapshots")).scalar_one()
    assert applied == 4 + 4 + 2  # every event exactly once (A, B, C)


# -- retention and the projector: no snapshot outlives its run -----------------------------------

OLD = dt.datetime(2026, 2, 10, 12, 0, tzinfo=dt.UTC)
BEFORE = dt.date(2026, 3, 1)


def _old_finished_run(engine: Engine, run_id: str) -> None:
    with RunEventStore(engine, clock=lambda: OLD) as store:
        for event in (
            new_event(run_id, E.RUN_STARTED),
            new_event(run_id, E.STEP_STARTED),
            new_event(run_id, E.STEP_COMPLETED),
            new_event(run_id, E.RUN_COMPLETED),
        ):
            store.append(event)


def _prune(engine: Engine) -> PruneReport:
    return prune_runs(engine, before=BEFORE, now=dt.datetime.now(dt.UTC))


def _prune_within(engine: Engine, seconds: float) -> tuple[list[PruneReport], threading.Thread]:
    """Start a retention pass in a thread and wait for it at most ``seconds`` (a pass that waits
    for the caller's locks fails the test instead of hanging it)."""
    reports: list[PruneReport] = []
    pruner = threading.Thread(target=lambda: reports.append(_prune(engine)))
    pruner.start()
    pruner.join(timeout=seconds)
    return reports, pruner


def _orphan_snapshots(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(run_snapshots.c.run_id).where(
                ~sa.exists().where(runs.c.run_id == run_snapshots.c.run_id)
            )
        ).scalars()
        return sorted(str(r) for r in rows)


def test_retention_skips_a_run_the_projector_is_writing_and_no_orphan_snapshot_is_left(
    ledger_store: RunEventStore,
) -> None:
    engine = ledger_store.engine
    _old_finished_run(engine, "X")
    passes: list[tuple[list[PruneReport], threading.Thread]] = []
    # Inside the projector's transaction, after it wrote X's first snapshot, before its commit.
    projector = Projector(engine, before_commit=lambda: passes.append(_prune_within(engine, 3.0)))
    assert projector.poll().runs_updated == ("X",)
    ((reports, pruner),) = passes
    pruner.join()
    assert not pruner.is_alive()
    assert len(reports) == 1, "retention waited for the projector's transaction"
    assert (reports[0].runs_deleted, reports[0].kept_busy) == (0, ("X",))
    assert _orphan_snapshots(engine) == []
    assert load_snapshot(engine, "X") == clean_fold(ledger_store, "X")

    after = _prune(engine)  # nobody holds X now: run, events and snapshot go together
    assert (after.runs_deleted, after.snapshots_deleted) == (1, 1)
    ledger_store.append(new_event("X", E.RUN_STARTED, attempt=7))  # the id used anew
    Projector(engine).poll()
    assert _orphan_snapshots(engine) == []
    assert load_snapshot(engine, "X") == clean_fold(ledger_store, "X")


@pytest.mark.parametrize("recreate", [False, True], ids=["pruned", "pruned-and-recreated"])
def test_a_run_pruned_after_the_projector_read_its_events_gets_no_stale_snapshot(
    ledger_store: RunEventStore, monkeypatch: pytest.MonkeyPatch, recreate: bool
) -> None:
    """Retention (and an append re-creating the run id at runSeq 1) commit between the projector's
    read of X's events and its write of X's first snapshot."""
    engine = ledger_store.engine
    _old_finished_run(engine, "X")
    ledger_store.append(new_event("Y", E.RUN_STARTED))
    real_load = Projector._load
    interleaved: list[PruneReport] = []

    def load_after_retention(self: Projector, conn: Connection, poll: Any, run_ids: Any) -> Any:
        if "X" in run_ids and not interleaved:
            interleaved.append(_prune(engine))
            if recreate:
                ledger_store.append(new_event("X", E.RUN_STARTED, attempt=2))
        return real_load(self, conn, poll, run_ids)

    monkeypatch.setattr(Projector, "_load", load_after_retention)
    projector = Projector(engine)
    first = projector.poll()
    assert interleaved and interleaved[0].runs_deleted == 1
    assert _orphan_snapshots(engine) == []
    assert load_snapshot(engine, "Y") == clean_fold(ledger_store, "Y")
    if not recreate:
        assert first.runs_updated == ("Y",) and load_snapshot(engine, "X") is None
        return
    projector.poll()
    snapshot = load_snapshot(engine, "X")
    assert snapshot == clean_fold(ledger_store, "X")
    assert snapshot is not None and (snapshot.last_event_seq, snapshot.events_applied) == (1, 1)
