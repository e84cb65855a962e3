"""The pure snapshot fold (seed 004 §1.4-1.5): reduction rules, ordering, gaps, JSON round trip."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metric_platform.errors import InternalError
from metric_platform.ledger.events import ArtifactRef, EventType, StoredEvent
from metric_platform.ledger.projection import (
    ErrorInfo,
    Gap,
    ProjectionGapError,
    RootCause,
    RunSnapshot,
    RunStatus,
    StepStatus,
    detect_gaps,
    incremental_project,
    project_run,
    split_at_gap,
)
from metric_platform_tests.ledger._projector_support import (
    T0,
    artifact,
    build_log,
    event_specs,
    log,
    new_event,
    stored,
)

R = "run-1"
E = EventType
NON_TERMINAL_RUN_EVENTS = (E.RUN_APPROVED, E.RUN_STARTED, E.RUN_PAUSED, E.RUN_RESUMED)


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def refs(*uris: str) -> tuple[ArtifactRef, ...]:
    return tuple(ArtifactRef.from_json(artifact(u)) for u in uris)


def test_a_run_that_fails_records_steps_counters_and_root_cause() -> None:
    events = log(
        new_event(R, E.RUN_APPROVED, at=at(0)),
        new_event(R, E.RUN_STARTED, at=at(10), engine_run_ref={"dagsterRunId": "abc"}),
        new_event(R, E.STEP_STARTED, step="b", at=at(11)),
        new_event(R, E.STEP_COMPLETED, step="b", at=at(12), data={"artifacts": [artifact("s3://x/1")]}),
        new_event(R, E.STEP_STARTED, step="a", at=at(13), engine=2),
        new_event(
            R,
            E.STEP_FAILED,
            step="a",
            at=at(14),
            engine=2,
            data={"error": {"code": "Boom", "message": "no", "retryable": True}},
        ),
        new_event(R, E.SIGNAL_ACCEPTED, at=at(15)),
        new_event(R, E.RUN_FAILED, at=at(20)),
    )
    snap = project_run(R, events)

    assert snap.status is RunStatus.FAILED
    assert (snap.last_event_seq, snap.events_applied, snap.failed_steps) == (8, 8, 1)
    assert (snap.started_at, snap.completed_at, snap.total_duration_ms) == (at(10), at(20), 10_000)
    assert snap.engine_run_ref == {"dagsterRunId": "abc"}
    assert [s.step_id for s in snap.steps] == ["a", "b"]  # sorted by step id
    a, b = snap.steps
    assert (a.status, a.engine_attempt_id, a.started_at, a.completed_at) == (
        StepStatus.FAILED,
        2,
        at(13),
        at(14),
    )
    assert a.error == ErrorInfo("Boom", "no", True)
    assert (b.status, b.artifacts, b.error) == (StepStatus.SUCCESS, refs("s3://x/1"), None)
    assert snap.root_cause == RootCause(ErrorInfo("Boom", "no", True), "a")
    assert snap.artifacts == ()  # aggregated on RunCompleted only


def test_run_failed_prefers_its_own_error_as_root_cause() -> None:
    step_error = {"code": "Step", "message": "m", "retryable": False}
    run_error = {"code": "Run", "message": "oom", "retryable": False}
    events = log(
        new_event(R, E.STEP_FAILED, step="a", data={"error": step_error}),
        new_event(R, E.RUN_FAILED, data={"error": run_error, "stepId": "z"}),
    )
    assert project_run(R, events).root_cause == RootCause(ErrorInfo("Run", "oom", False), "z")
    assert project_run(R, log(events[1].event)).root_cause == RootCause(ErrorInfo("Run", "oom", False), "z")
    only_run = log(new_event(R, E.RUN_FAILED, data={"rootCause": "disk full"}))
    assert project_run(R, only_run).root_cause == RootCause(ErrorInfo("UNSPECIFIED", "disk full", False))
    assert project_run(R, log(new_event(R, E.RUN_FAILED))).root_cause is None


def test_root_cause_is_the_earliest_step_failure() -> None:
    err = {"error": {"code": "E", "message": "x", "retryable": False}}
    events = log(
        new_event(R, E.STEP_FAILED, step="late", at=at(50), data=err),
        new_event(R, E.STEP_FAILED, step="early", at=at(5), data=err),
        new_event(R, E.RUN_FAILED, at=at(60)),
    )
    root = project_run(R, events).root_cause
    assert root is not None
    assert root.step_id == "early"


def test_run_completed_aggregates_its_own_then_step_artifacts_deduplicated() -> None:
    events = log(
        new_event(R, E.RUN_STARTED, at=at(0)),
        new_event(
            R, E.STEP_COMPLETED, step="b", data={"artifacts": [artifact("s3://b"), artifact("s3://shared")]}
        ),
        new_event(
            R, E.STEP_COMPLETED, step="a", data={"artifacts": [artifact("s3://a"), artifact("s3://shared")]}
        ),
        new_event(R, E.STEP_FAILED, step="c", data={"artifacts": [artifact("s3://never")]}),
        new_event(R, E.RUN_COMPLETED, at=at(2), data={"artifacts": [artifact("s3://run")]}),
        new_event(R, E.STEP_COMPLETED, step="d", at=at(3), data={"artifacts": [artifact("s3://late")]}),
    )
    snap = project_run(R, events)
    assert snap.status is RunStatus.COMPLETED  # a late step event never changes the run's status
    assert snap.artifacts == refs("s3://run", "s3://a", "s3://shared", "s3://b", "s3://late")
    assert snap.total_duration_ms == 2_000


def test_late_step_started_after_its_outcome_does_not_regress() -> None:
    events = log(
        new_event(
            R, E.STEP_COMPLETED, step="s", at=at(20), engine=1, data={"artifacts": [artifact("s3://o")]}
        ),
        new_event(R, E.STEP_STARTED, step="s", at=at(10), engine=0),  # spooled, replayed late
    )
    step = project_run(R, events).step("s")
    assert step is not None
    assert (step.status, step.started_at, step.completed_at) == (StepStatus.SUCCESS, at(10), at(20))
    assert (step.engine_attempt_id, step.artifacts) == (1, refs("s3://o"))


def test_late_step_started_of_an_older_attempt_changes_nothing() -> None:
    done = new_event(R, E.STEP_FAILED, step="s", attempt=2, at=at(20), data={"error": "x"})
    late = new_event(R, E.STEP_STARTED, step="s", attempt=1, at=at(5))
    before = project_run(R, log(done))
    after = project_run(R, log(done, late))
    assert after.steps == before.steps
    assert after.events_applied == 2


def test_step_started_of_a_newer_attempt_resets_the_step() -> None:
    events = log(
        new_event(
            R, E.STEP_COMPLETED, step="s", attempt=1, at=at(1), data={"artifacts": [artifact("s3://1")]}
        ),
        new_event(R, E.STEP_STARTED, step="s", attempt=2, engine=0, at=at(5)),
    )
    step = project_run(R, events).step("s")
    assert step is not None
    assert (step.status, step.logical_attempt_id, step.started_at) == (StepStatus.RUNNING, 2, at(5))
    assert (step.completed_at, step.artifacts, step.error) == (None, (), None)


def test_an_older_attempts_outcome_is_stale_but_still_counted() -> None:
    events = log(
        new_event(R, E.STEP_STARTED, step="s", attempt=2, at=at(5)),
        new_event(R, E.STEP_FAILED, step="s", attempt=1, at=at(6), data={"error": "old"}),
    )
    snap = project_run(R, events)
    step = snap.step("s")
    assert step is not None
    assert (step.status, step.logical_attempt_id, step.error) == (StepStatus.RUNNING, 2, None)
    assert snap.failed_steps == 1


def test_a_platform_retry_that_succeeds_reads_success() -> None:
    events = log(
        new_event(R, E.STEP_STARTED, step="s", engine=0, at=at(1)),
        new_event(R, E.STEP_FAILED, step="s", engine=0, at=at(2), data={"error": "flaky"}),
        new_event(R, E.STEP_COMPLETED, step="s", engine=1, at=at(3)),
    )
    snap = project_run(R, events)
    step = snap.step("s")
    assert step is not None
    assert (step.status, step.engine_attempt_id, step.error, step.started_at) == (
        StepStatus.SUCCESS,
        1,
        None,
        at(1),
    )
    assert snap.failed_steps == 1  # the failed attempt is history


def test_skipped_step_records_its_reason() -> None:
    step = project_run(R, log(new_event(R, E.STEP_SKIPPED, step="s", data={"reason": "upstream"}))).step("s")
    assert step is not None
    assert (step.status, step.skip_reason) == (StepStatus.SKIPPED, "upstream")


@pytest.mark.parametrize("terminal", [E.RUN_COMPLETED, E.RUN_FAILED, E.RUN_CANCELLED])
def test_terminal_run_is_not_regressed_by_late_events_of_its_attempt(terminal: EventType) -> None:
    expected = {E.RUN_COMPLETED: RunStatus.COMPLETED, E.RUN_FAILED: RunStatus.FAILED}.get(
        terminal, RunStatus.CANCELLED
    )
    events = log(
        new_event(R, E.RUN_STARTED, at=at(10)),
        new_event(R, terminal, at=at(30)),
        new_event(R, E.RUN_PAUSED, at=at(31)),
        new_event(R, E.RUN_RESUMED, at=at(32)),
        new_event(R, E.RUN_APPROVED, at=at(33)),
        new_event(R, E.STEP_STARTED, step="s", at=at(34)),
        new_event(R, E.SIGNAL_REJECTED, at=at(35)),
        new_event(R, E.RUN_STARTED, at=at(5), engine_run_ref={"late": True}),  # late, earlier start
    )
    snap = project_run(R, events)
    assert snap.status is expected
    assert (snap.started_at, snap.completed_at, snap.total_duration_ms) == (at(5), at(30), 25_000)
    assert snap.engine_run_ref == {"late": True}


def test_pause_resume_and_late_approval() -> None:
    seq = [
        new_event(R, E.RUN_APPROVED),
        new_event(R, E.RUN_STARTED),
        new_event(R, E.RUN_APPROVED, plan_version="p2"),  # a late approval does not undo the start
        new_event(R, E.RUN_PAUSED),
        new_event(R, E.RUN_STARTED, plan_version="p2"),  # a late start does not undo the pause
        new_event(R, E.RUN_RESUMED),
    ]
    statuses = [project_run(R, log(*seq[: i + 1])).status for i in range(len(seq))]
    assert statuses == [
        RunStatus.APPROVED,
        RunStatus.RUNNING,
        RunStatus.RUNNING,
        RunStatus.PAUSED,
        RunStatus.PAUSED,
        RunStatus.RUNNING,
    ]


def test_a_re_execution_restarts_a_finished_run_and_ignores_the_old_attempt() -> None:
    events = log(
        new_event(R, E.RUN_STARTED, attempt=1, at=at(0)),
        new_event(R, E.RUN_FAILED, attempt=1, at=at(10), data={"error": "first"}),
        new_event(R, E.RUN_STARTED, attempt=2, at=at(20)),
    )
    snap = project_run(R, events)
    assert (snap.status, snap.run_attempt_id, snap.root_cause, snap.completed_at) == (
        RunStatus.RUNNING,
        2,
        None,
        None,
    )
    assert snap.started_at == at(0)  # total duration spans every attempt
    done = incremental_project(
        snap,
        [
            stored(new_event(R, E.RUN_COMPLETED, attempt=2, at=at(40)), 4),
            stored(new_event(R, E.RUN_CANCELLED, attempt=1, at=at(41)), 5),  # stale
        ],
    )
    assert (done.status, done.total_duration_ms, done.events_applied) == (RunStatus.COMPLETED, 40_000, 5)
    approved = project_run(R, [*events[:2], stored(new_event(R, E.RUN_APPROVED, attempt=2), 3)])
    assert approved.status is RunStatus.APPROVED


def test_malformed_payloads_are_read_leniently() -> None:
    events = log(
        new_event(
            R,
            E.STEP_COMPLETED,
            step="a",
            data={
                "artifacts": [
                    {"uri": 1, "kind": "x"},
                    "nope",
                    {"uri": "s3://ok", "kind": "k", "sizeBytes": "big", "sha256": 5},
                    {"uri": "s3://bad-date", "kind": "k", "expiresAt": "not a date"},
                ]
            },
        ),
        new_event(R, E.STEP_COMPLETED, step="b", data={"artifacts": "not a list"}),
        new_event(R, E.STEP_FAILED, step="c", data={"error": {"code": 3, "message": None, "retryable": 1}}),
        new_event(R, E.STEP_FAILED, step="d", data={"error": ["?"]}),
    )
    snap = project_run(R, events)
    a, b, c, d = snap.steps
    assert a.artifacts == (ArtifactRef("s3://ok", "k"),)
    assert b.artifacts == ()
    assert c.error == d.error == ErrorInfo("UNSPECIFIED", "", False)


def test_gaps_are_refused_and_replays_ignored() -> None:
    events = log(*(new_event(R, E.SIGNAL_ACCEPTED, plan_version=str(i)) for i in range(5)))
    first = project_run(R, events[:2])
    with pytest.raises(ProjectionGapError) as info:
        incremental_project(first, [events[3], events[4]])
    assert (info.value.run_id, info.value.expected, info.value.found) == (R, 3, 4)
    with pytest.raises(ProjectionGapError):
        project_run(R, events[1:])  # a log must start at runSeq 1
    replayed = incremental_project(first, events[:3])  # 1-2 again, then 3
    assert (replayed.last_event_seq, replayed.events_applied) == (3, 3)
    same = incremental_project(replayed, events[:3])
    assert same == replayed
    assert same is not replayed  # a new object every time
    shuffled = incremental_project(first, [events[4], events[2], events[3]])
    assert shuffled == project_run(R, events)


def test_detect_gaps_and_split() -> None:
    assert detect_gaps(4, 5).has_gap is False
    assert detect_gaps(4, 7) == detect_gaps(4, 6)
    assert detect_gaps(4, 7).has_gap is True
    assert detect_gaps(4, 7).expected == 5
    assert detect_gaps(4, 3).has_gap is False  # a re-read, not a gap
    events = log(*(new_event(R, E.SIGNAL_ACCEPTED, plan_version=str(i)) for i in range(6)))
    split = split_at_gap(1, [events[0], events[1], events[2], events[4], events[5]])
    assert [e.run_seq for e in split.ready] == [2, 3]
    assert split.gap == Gap(expected=4, found=5)
    assert split_at_gap(6, events).ready == ()


def test_events_of_another_run_are_refused() -> None:
    with pytest.raises(InternalError, match="group events by run"):
        project_run(R, log(new_event("other", E.RUN_STARTED)))


# -- properties over generated logs -------------------------------------------------------------

logs = st.lists(event_specs(), min_size=1, max_size=25).map(lambda specs: build_log(R, specs))


def _json_round_trip(snap: RunSnapshot) -> RunSnapshot:
    return RunSnapshot.from_json(json.loads(json.dumps(snap.to_json())))


@given(logs, st.data())
def test_folding_in_pieces_through_stored_json_equals_one_fold(
    events: list[StoredEvent], data: st.DataObject
) -> None:
    whole = project_run(R, events)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), max_size=4)))
    snap = RunSnapshot.initial(R)
    for lo, hi in zip([0, *cuts], [*cuts, len(events)], strict=True):
        # Every piece restarts from the stored JSON and re-reads one applied event (a crash replay).
        snap = incremental_project(_json_round_trip(snap), events[max(0, lo - 1) : hi])
    assert snap == whole
    assert snap.to_json() == whole.to_json()


@given(logs)
def test_every_snapshot_survives_its_json_round_trip(events: list[StoredEvent]) -> None:
    for i in range(1, len(events) + 1):
        snap = project_run(R, events[:i])
        assert _json_round_trip(snap) == snap


@given(logs)
def test_fold_invariants(events: list[StoredEvent]) -> None:
    snap = RunSnapshot.initial(R)
    for event in events:
        before_json = snap.to_json()
        after = incremental_project(snap, [event])
        assert snap.to_json() == before_json  # the input is never changed
        if event.event_type.is_step_event or event.event_type in (E.SIGNAL_ACCEPTED, E.SIGNAL_REJECTED):
            assert after.status is snap.status  # only run events move the run
        if not event.event_type.is_step_event:
            assert after.steps == snap.steps
        step_before = snap.step(event.event.identity.step_id)
        step_after = after.step(event.event.identity.step_id)
        if event.event_type is E.STEP_STARTED and step_before is not None and step_before.status.is_terminal:
            newer = event.event.identity.logical_attempt_id > step_before.logical_attempt_id
            assert step_after is not None
            assert step_after.status is (StepStatus.RUNNING if newer else step_before.status)
        same_attempt = event.event.identity.logical_attempt_id <= snap.run_attempt_id
        if snap.status.is_terminal and same_attempt and event.event_type in NON_TERMINAL_RUN_EVENTS:
            assert after.status is snap.status  # terminal is never regressed within an attempt
        snap = after
    assert snap.last_event_seq == snap.events_applied == len(events)
    assert snap.failed_steps == sum(e.event_type is E.STEP_FAILED for e in events)
    ids = [s.step_id for s in snap.steps]
    assert ids == sorted(set(ids))
    if snap.status is not RunStatus.COMPLETED:
        assert snap.artifacts == ()


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"v": 2},
        {"v": 1},
        {"v": 1, "runId": "r", "status": "NOPE"},
        {**RunSnapshot("r").to_json(), "steps": [1]},
    ],
)
def test_malformed_snapshot_json_is_a_value_error(raw: object) -> None:
    with pytest.raises(ValueError, match="run snapshot JSON"):
        RunSnapshot.from_json(raw)  # type: ignore[arg-type]
