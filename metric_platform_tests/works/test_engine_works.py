"""Each engine-backed work through ``run_work``: its result, its value, and the one-step ledger run
it leaves (seed 004 §1.2: RunStarted, StepStarted, StepCompleted, RunCompleted at runSeq 1..4;
§2: artifacts are ``engine://`` references, never payloads); bad requests rejected before anything
is written (seed 000 AC-2); a work failing inside ``run`` recorded as failed, its error raised."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from metric_platform.db import create_db_engine
from metric_platform.engine.compose import Frame
from metric_platform.engine.lifecycle.types import EvictionReport, RefreshReport
from metric_platform.engine.qm.projections import ColumnProfile, TableProfile
from metric_platform.engine.serving.types import Served
from metric_platform.errors import UnknownNameError, UserError
from metric_platform.execution.adapters import run_batch
from metric_platform.execution.context import ExecutionContext, InvalidContextError
from metric_platform.execution.results import ExecutionStatus
from metric_platform.ledger.events import RUN_STEP, EventType, JSONValue, canonical_json
from metric_platform.ledger.projection import RunStatus, StepStatus
from metric_platform.ledger.projector import Projector, load_snapshot
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.works.runner import batch_context, run_work
from metric_platform_tests.works.conftest import (
    LAST_WEEK,
    LATER,
    PROVISIONAL_SERVE,
    QUERY,
    SERVE,
    WEEK,
    Stores,
)
from metric_platform_tests.works.state import db_rows, ledger_events

RUN_EVENTS = [
    (1, EventType.RUN_STARTED),
    (2, EventType.STEP_STARTED),
    (3, EventType.STEP_COMPLETED),
    (4, EventType.RUN_COMPLETED),
]
ARTIFACT_KEYS = {"uri", "kind", "sha256", "sizeBytes", "expiresAt"}
# A StepCompleted stays small whatever the work computed: a payload would not (seed 004 §6).
MAX_EVENT_BYTES = 4096


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class Case:
    """One work to run: its params and days, what its value is, and what must exist before it."""

    work: str
    params: dict[str, Any]
    value_type: type
    days: tuple[dt.date, dt.date] | None = None
    today: dt.date | None = None
    before: tuple[tuple[str, dict[str, Any], tuple[dt.date, dt.date] | None], ...] = ()
    # (domain, datasets, anchor signature, slice keys) the artifacts must name, one per entry
    artifacts: tuple[str, tuple[str, ...], str, tuple[str, ...]] | None = None
    check: Callable[[Any], None] = field(default=lambda value: None)


def _check_served(value: Served) -> None:
    frame = value.frame.collect()
    assert frame.columns[:2] == ["region", "day"] and frame.height > 0
    assert frame["day"].min() == WEEK[0] and frame["day"].max() == WEEK[1]


def _check_frame(value: Frame) -> None:
    assert {"region", "revenue", "spend", "roas"} <= set(value.data.columns)
    assert value.data.height > 0
    error = (pl.col("roas") - pl.col("revenue") / pl.col("spend")).abs()
    assert value.data.select((error < 1e-9).all()).item(), "the derived metric, row by row"


def _check_refresh(value: RefreshReport) -> None:
    assert not value.dry_run and value.cutoff == LATER - dt.timedelta(days=3)
    assert value.recomputed == 2, "the two provisional days of the earlier serve crossed the cutoff"


def _check_evict(value: EvictionReport) -> None:
    assert not value.dry_run and value.evicted and value.evictable_after == 0


CASES = [
    Case(
        "engine.serve",
        SERVE,
        Served,
        days=WEEK,
        artifacts=("METRIC", ("revenue",), "region,day", tuple(d.isoformat() for d in _days(*WEEK))),
        check=_check_served,
    ),
    Case("engine.query", QUERY, Frame, days=WEEK, check=_check_frame),
    Case(
        "qm.profile",
        {"schema_name": "stores"},
        TableProfile,
        artifacts=("QM", ("column_profile",), "stores,*", ("_all",)),
    ),
    Case(
        "qm.profile",
        {"schema_name": "transactions", "column": "revenue"},
        ColumnProfile,
        artifacts=("QM", ("column_profile", "histogram", "top_values"), "transactions,revenue", ("_all",)),
    ),
    Case(
        "engine.refresh",
        {},
        RefreshReport,
        today=LATER,
        before=(("engine.serve", PROVISIONAL_SERVE, LAST_WEEK),),
        check=_check_refresh,
    ),
    Case(
        "engine.evict",
        {"to_bytes": 0},
        EvictionReport,
        before=(("engine.serve", SERVE, WEEK),),
        check=_check_evict,
    ),
]


def _case_id(case: Case) -> str:
    return f"{case.work}{'-column' if 'column' in case.params else ''}"


def _entries(stores: Stores) -> list[Mapping[str, Any]]:
    engine = create_db_engine(stores.settings.manifest_url, read_only=True)
    try:
        with engine.connect() as conn:
            table = sa.Table("engine_entries", sa.MetaData(), autoload_with=conn)
            return [dict(r) for r in conn.execute(sa.select(table)).mappings()]
    finally:
        engine.dispose()


def _expected_refs(
    stores: Stores, spec: tuple[str, tuple[str, ...], str, tuple[str, ...]]
) -> set[tuple[str, int]]:
    """(uri, byte size) of the manifest entries ``spec`` names (``*`` ends an anchor prefix)."""
    domain, datasets, anchor, slices = spec
    out = set()
    for row in _entries(stores):
        signature = row["anchor_signature"]
        matches = signature.startswith(anchor[:-1]) if anchor.endswith("*") else signature == anchor
        slice_key = row["slice_key"] or "_all"
        if row["domain"] == domain and row["dataset_id"] in datasets and matches and slice_key in slices:
            uri = f"engine://retail/{domain}/{row['dataset_id']}/{signature}/{slice_key}?v={row['version']}"
            out.add((uri, int(row["byte_size"])))
    return out


def assert_references_only(data: Mapping[str, JSONValue]) -> None:
    """A StepCompleted's data: artifact references and a flat summary, never a payload."""
    assert set(data) == {"artifacts", "summary"}
    for artifact in data["artifacts"]:
        assert set(artifact) <= ARTIFACT_KEYS and artifact["uri"].startswith("engine://")
    for value in data["summary"].values():
        assert value is None or isinstance(value, str | int | float | bool | list)
    assert len(canonical_json(dict(data)).encode()) < MAX_EVENT_BYTES


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_each_work_completes_and_records_a_four_event_run(
    case: Case, stores: Stores, ac: AnalyticalContext
) -> None:
    for work, params, days in case.before:
        assert stores.run(ac, work, params, days=days).ok
    workspace = stores.workspace(ac, today=case.today)
    context = batch_context(workspace, case.work, case.params, days=case.days)

    result = run_work(workspace, context)

    assert result.status is ExecutionStatus.COMPLETED and result.suppressed is None
    assert result.outcome is not None
    assert isinstance(result.outcome.value, case.value_type)
    case.check(result.outcome.value)
    events = ledger_events(stores.settings, context.identity.run_id)
    assert [(e.run_seq, e.event_type) for e in events] == RUN_EVENTS
    step = context.identity.step_id
    assert [e.event.identity.step_id for e in events] == [RUN_STEP, step, step, RUN_STEP]
    assert step == (f"{case.work}[{case.days[0]}..{case.days[1]}]" if case.days else case.work)
    assert all(e.event.identity.logical_attempt_id == 1 for e in events)
    # The run events name the work (their only data: the same for RunStarted and RunCompleted).
    assert events[0].event.data == events[3].event.data
    assert list(events[0].event.data.values()) == [case.work]
    completed = events[2].event.data
    assert_references_only(completed)
    assert completed["artifacts"] == [a.to_json() for a in result.outcome.artifacts]
    assert completed["summary"] == dict(result.outcome.summary)
    recorded = {(a["uri"], a["sizeBytes"]) for a in completed["artifacts"]}
    if case.artifacts is None:
        assert recorded == set()
    else:
        expected = _expected_refs(stores, case.artifacts)
        assert recorded == expected and expected, "one reference per entry the work produced or read"


def test_a_served_frame_matches_its_summary(stores: Stores, ac: AnalyticalContext) -> None:
    result = stores.run(ac, "engine.serve", SERVE, days=WEEK)
    assert result.outcome is not None and isinstance(result.outcome.value, Served)
    frame = result.outcome.value.frame.collect()
    summary = result.outcome.summary
    assert summary["rows"] == frame.height
    assert (summary["family"], summary["anchor"], summary["path"]) == (
        "revenue",
        ["region", "day"],
        "backend",
    )
    regions = frame["region"].n_unique()
    assert frame.height == regions * 7, "one row per region and day of the week"
    assert frame.select(pl.col("revenue").is_not_null().all()).item()


# -- bad requests: rejected before anything is written -------------------------------------------
def _batch(ac: AnalyticalContext, changes: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "tenant_id": ac.tenant_id,
        "ac": ac.name,
        "work": "engine.serve",
        "params": SERVE,
        "partition_start": WEEK[0].isoformat(),
        "partition_end": WEEK[1].isoformat(),
        "triggered_by": "tester",
    }
    fields.update(changes)
    return fields


BAD_REQUESTS: list[tuple[str, dict[str, Any], type[UserError], tuple[str, ...]]] = [
    (
        "unknown-family",
        {"params": {"family": "revenu", "anchor": ["region"]}},
        UnknownNameError,
        ("unknown metric family 'revenu'", "did you mean 'revenue'?"),
    ),
    (
        "unknown-dimension",
        {"work": "engine.query", "params": {"metrics": ["revenue"], "grain": ["regoin"]}},
        UnknownNameError,
        ("unknown dimension 'regoin'", "did you mean 'region'?"),
    ),
    (
        "unknown-schema",
        {"work": "qm.profile", "params": {"schema_name": "store"}},
        UnknownNameError,
        ("unknown schema 'store'", "did you mean 'stores'?"),
    ),
    (
        "unknown-param-key",
        {"params": {"family": "revenue", "colour": "red"}},
        InvalidContextError,
        ("parameters of engine.serve", "colour", "not permitted"),
    ),
    (
        "bad-param-value",
        {"work": "engine.evict", "params": {"to_bytes": -1}},
        InvalidContextError,
        ("parameters of engine.evict", "to_bytes"),
    ),
    (
        "unknown-work",
        {"work": "engine.serv"},
        InvalidContextError,
        ("unknown work 'engine.serv'", "did you mean 'engine.serve'?"),
    ),
    (
        "wrong-tenant",
        {"tenant_id": "globex"},
        InvalidContextError,
        ("tenant 'globex' does not own AC 'retail'", "its tenant is 'acme'"),
    ),
    (
        "wrong-ac",
        {"ac": "wholesale"},
        InvalidContextError,
        ("scope.ac is 'wholesale'", "serves AC 'retail'"),
    ),
]


@pytest.mark.parametrize(
    ("changes", "error", "phrases"), [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_a_bad_request_raises_a_user_error_and_writes_nothing(
    changes: dict[str, Any],
    error: type[UserError],
    phrases: tuple[str, ...],
    stores: Stores,
    ac: AnalyticalContext,
) -> None:
    context = run_batch(_batch(ac, changes))
    with pytest.raises(error) as raised:
        run_work(stores.workspace(ac), context)
    assert isinstance(raised.value, UserError)
    for phrase in phrases:
        assert phrase in str(raised.value)
    assert not stores.home.exists(), "no home directory, no manifest, no spool"
    assert {url: db_rows(url) for url in stores.urls} == {url: {} for url in stores.urls}, "no table at all"


# -- a work failing inside run() -----------------------------------------------------------------
class SourceDownError(ConnectionError):
    """What a backend raises when its database cannot be reached (an OSError: retryable)."""


def _unreachable(ac: AnalyticalContext) -> Any:
    msg = f"the source of AC {ac.name!r} is unreachable"
    raise SourceDownError(msg)


def _fail(stores: Stores, ac: AnalyticalContext) -> ExecutionContext:
    workspace = stores.workspace(ac, open_backend=_unreachable)
    context = batch_context(workspace, "engine.serve", SERVE, days=WEEK)
    with pytest.raises(SourceDownError, match="unreachable"):
        run_work(workspace, context)
    return context


def test_a_work_failing_in_run_records_step_and_run_failed_and_raises(
    stores: Stores, ac: AnalyticalContext
) -> None:
    context = _fail(stores, ac)

    events = ledger_events(stores.settings, context.identity.run_id)
    assert [(e.run_seq, e.event_type) for e in events] == [
        (1, EventType.RUN_STARTED),
        (2, EventType.STEP_STARTED),
        (3, EventType.STEP_FAILED),
        (4, EventType.RUN_FAILED),
    ]
    error = events[2].event.data["error"]
    assert error["code"] == "SourceDownError" and "unreachable" in error["message"]
    assert error["retryable"] is True, "an OSError may pass when the step runs again"
    cause = events[3].event.data["rootCause"]
    assert (cause["code"], cause["message"]) == (error["code"], error["message"])
    assert "engine.serve" in events[3].event.data.values()


def test_the_projected_root_cause_of_a_failed_run_agrees_with_its_failed_step(
    sqlite_stores: Stores, ac: AnalyticalContext
) -> None:
    context = _fail(sqlite_stores, ac)
    engine = create_db_engine(sqlite_stores.settings.platform_url)
    try:
        Projector(engine).poll()
        snapshot = load_snapshot(engine, context.identity.run_id)
    finally:
        engine.dispose()
    assert snapshot is not None and snapshot.status is RunStatus.FAILED
    step = snapshot.step(context.identity.step_id)
    assert step is not None and step.status is StepStatus.FAILED and step.error is not None
    assert snapshot.root_cause is not None
    assert snapshot.root_cause.error == step.error
