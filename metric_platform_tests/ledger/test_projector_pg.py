"""PostgreSQL: a transaction that appended early and commits late is never passed by the projector
(the Marten #1629 / #3321 failure of position-only watermarks), while other runs keep projecting."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from metric_platform.db import write_transaction
from metric_platform.ledger.events import EventType
from metric_platform.ledger.projector import Projector, Watermark, load_snapshot
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
