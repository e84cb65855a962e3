"""Stateful property (SQLite): any sequence of appends, duplicate appends, projector crashes between
the snapshot write and the commit, restarts and polls leaves every stored snapshot equal to the
pure fold of a prefix of the accepted events, and after a clean poll to the fold of all of them."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from metric_platform.db import create_db_engine
from metric_platform.ledger.errors import LedgerConflictError
from metric_platform.ledger.events import NewEvent, canonical_json
from metric_platform.ledger.projection import RunSnapshot, project_run
from metric_platform.ledger.projector import Projector
from metric_platform.ledger.store import AppendOutcome, RunEventStore
from metric_platform.platform_db import open_platform_db
from metric_platform_tests.ledger._projector_support import EventSpec, event_specs, stored, stored_snapshots

RUN_IDS = ("r1", "r2", "r3")


class InjectedCrash(RuntimeError):
    pass


def fold(run_id: str, events: list[NewEvent]) -> RunSnapshot:
    return project_run(run_id, [stored(e, i) for i, e in enumerate(events, start=1)])


class ProjectorMachine(RuleBasedStateMachine):
    """The model: each run's accepted events in runSeq order, and their keys."""

    template: Path  # a migrated, empty SQLite file, copied per example

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="projector-machine-"))
        shutil.copy(self.template, self.dir / "platform.sqlite")
        self.engine = create_db_engine(f"sqlite:///{self.dir / 'platform.sqlite'}")
        self.store = RunEventStore(self.engine)
        self.accepted: dict[str, list[NewEvent]] = {r: [] for r in RUN_IDS}
        self.by_key: dict[str, tuple[str, int, str]] = {}  # key -> (run, runSeq, payload)
        self.projector = Projector(self.engine, batch_size=3)

    def teardown(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(run_id=st.sampled_from(RUN_IDS), spec=event_specs())
    def append(self, run_id: str, spec: EventSpec) -> None:
        event = spec.build(run_id)
        known = self.by_key.get(event.idempotency_key)
        if known is not None and known[2] != event.payload_text:
            with pytest.raises(LedgerConflictError):
                self.store.append(event)
            return
        result = self.store.append(event)
        assert result.event is not None
        if known is not None:
            assert (result.outcome, result.event.run_seq) == (AppendOutcome.DUPLICATE, known[1])
            return
        assert result.outcome is AppendOutcome.APPENDED
        self.accepted[run_id].append(event)
        assert result.event.run_seq == len(self.accepted[run_id])
        self.by_key[event.idempotency_key] = (run_id, result.event.run_seq, event.payload_text)

    @rule(data=st.data())
    def duplicate_append(self, data: st.DataObject) -> None:
        """A platform retry of an accepted event (another engine attempt): recorded once."""
        accepted = [e for events in self.accepted.values() for e in events]
        if not accepted:
            return
        original = data.draw(st.sampled_from(accepted))
        retry = replace(original, identity=replace(original.identity, engine_attempt_id=7))
        result = self.store.append(retry)
        assert result.event is not None
        assert result.outcome is AppendOutcome.DUPLICATE
        assert result.event.run_seq == self.by_key[original.idempotency_key][1]
        assert canonical_json(dict(result.event.event.data)) == canonical_json(dict(original.data))

    @rule()
    def poll(self) -> None:
        report = self.projector.poll()
        assert report.halted_runs == ()
        rows = stored_snapshots(self.engine)
        for run_id, events in self.accepted.items():
            if events:
                assert rows[run_id] == (fold(run_id, events), None)

    @rule(commits_before_crash=st.integers(0, 3))
    def crash_mid_poll(self, commits_before_crash: int) -> None:
        """A projector dies inside a batch transaction, after ``commits_before_crash`` batches."""
        calls = 0

        def hook() -> None:
            nonlocal calls
            calls += 1
            if calls > commits_before_crash:
                raise InjectedCrash

        crashing = Projector(self.engine, batch_size=2, before_commit=hook)
        with contextlib.suppress(InjectedCrash):
            crashing.poll()

    @rule()
    def restart(self) -> None:
        """Drop the projector (and the engine's connections); a new one resumes from the DB."""
        self.engine.dispose()
        self.projector = Projector(self.engine, batch_size=3)

    @invariant()
    def snapshots_are_folds_of_accepted_prefixes(self) -> None:
        for run_id, (snapshot, halted) in stored_snapshots(self.engine).items():
            events = self.accepted[run_id]
            assert halted is None
            assert snapshot.last_event_seq <= len(events)
            assert snapshot == fold(run_id, events[: snapshot.last_event_seq])


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="projector-template-") as tmp:
        path = Path(tmp) / "platform.sqlite"
        open_platform_db(f"sqlite:///{path}").dispose()
        yield path


def test_projector_state_machine(template: Path) -> None:
    ProjectorMachine.template = template
    run_state_machine_as_test(ProjectorMachine, settings=settings(stateful_step_count=25))
