"""The spool's JSON form of a NewEvent round-trips every field and rejects anything else."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metric_platform.ledger.codec import FORMAT, EventDecodeError, event_from_json, event_to_json
from metric_platform.ledger.events import EventIdentity, EventType, NewEvent

_TEXT = st.text(max_size=20)
_JSON_LEAF = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _TEXT
_JSON = st.recursive(
    _JSON_LEAF | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
_ZONES = st.sampled_from(
    [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=7))]
)

events = st.builds(
    NewEvent,
    identity=st.builds(
        EventIdentity,
        run_id=_TEXT,
        step_id=_TEXT,
        logical_attempt_id=st.integers(1, 10**6),
        engine_attempt_id=st.integers(0, 10**6),
        plan_version=_TEXT,
    ),
    event_type=st.sampled_from(list(EventType)),
    data=st.dictionaries(_TEXT, _JSON, max_size=4),
    emitted_at=st.datetimes(timezones=_ZONES),
    adapter_version=_TEXT,
    engine_run_ref=st.none() | st.dictionaries(_TEXT, _JSON_LEAF, max_size=3),
    caused_by_signal_id=st.none() | st.uuids(),
    parent_event_id=st.none() | st.uuids(),
)


@given(events)
def test_every_field_round_trips_through_json_text(event: NewEvent) -> None:
    text = json.dumps(event_to_json(event), ensure_ascii=False, allow_nan=False)
    back = event_from_json(json.loads(text))
    assert back == event
    assert back.emitted_at.utcoffset() == event.emitted_at.utcoffset()
    assert back.idempotency_key == event.idempotency_key
    assert back.event_id == event.event_id
    assert back.payload_text == event.payload_text


def _document(**changes: Any) -> dict[str, Any]:
    event = NewEvent(
        identity=EventIdentity(run_id="run-1", step_id="step-a", logical_attempt_id=2, engine_attempt_id=1),
        event_type=EventType.STEP_STARTED,
        data={"k": 1},
        emitted_at=dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC),
        caused_by_signal_id=uuid.UUID(int=7),
    )
    doc = event_to_json(event)
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([1, 2], "expected a JSON object, got list"),
        (_document(format="other/1"), "format is 'other/1'"),
        ({"format": FORMAT}, "field 'runId' is missing"),
        (_document(logicalAttemptId="2"), "'logicalAttemptId' should be int, not str"),
        (_document(logicalAttemptId=True), "'logicalAttemptId' should be int, not bool"),
        (_document(eventType="StepExploded"), "not a valid event"),
        (_document(emittedAt="2026-03-01T12:00:00"), "has no time zone"),
        (_document(emittedAt="yesterday"), "not a valid event"),
        (_document(causedBySignalId="not-a-uuid"), "not a valid event"),
        (_document(eventData=[1]), "'eventData' should be dict"),
        (_document(stepId="step-b"), "the document was edited"),
    ],
)
def test_malformed_or_edited_documents_are_refused_with_a_reason(raw: object, reason: str) -> None:
    with pytest.raises(EventDecodeError, match=reason):
        event_from_json(raw)


def test_payload_edits_outside_the_key_still_decode() -> None:
    # The key covers the identity, not the data: a changed payload decodes, and the store's
    # payload comparison (LedgerConflictError) is what catches it on replay.
    assert event_from_json(_document(eventData={"k": 2})).data == {"k": 2}
