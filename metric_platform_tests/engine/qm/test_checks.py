"""The quality checks derived from a profile and FD verifications (pure): which checks a schema of
the retail AC gets, when each passes or fails, what its metadata says, and the JSON round trip
that lets the ledger keep the outcomes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import polars as pl
import pytest

from metric_platform.engine.qm.checks import (
    CheckOutcome,
    distinct_counts,
    evaluate,
    fd_check,
    null_fraction,
    planned_checks,
    reference_columns,
    required_columns,
)
from metric_platform.engine.qm.fd_verification import EdgeVerification, Violation
from metric_platform.engine.qm.profiling import profile_columns
from metric_platform.engine.qm.projections import TableProfile, table_profile_from_frames
from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.fd_dag import FDEdge
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform_tests.engine.conftest import RETAIL_YAML

STORE_REGION = FDEdge("store", "region")
STORES: dict[str, list[Any]] = {
    "store_id": ["S1", "S2", "S3"],
    "store_name": ["a", "b", None],
    "region": ["north", "north", "south"],
    "opened_on": [dt.date(2020, 1, 1)] * 3,
}
TRANSACTIONS: dict[str, list[Any]] = {
    "txn_id": [1, 2, 3, 4],
    "tenant_id": ["acme"] * 4,
    "project_id": ["p"] * 4,
    "event_date": [dt.date(2026, 11, 1)] * 4,
    "store_id": ["S1", "S2", "S2", "S3"],
    "campaign_id": ["C1", None, None, "C2"],
    "customer_id": ["u1", "u2", "u3", "u4"],
    "revenue": [1.0, None, 3.0, 4.0],
    "spend": [0.5, 0.5, 0.5, 0.5],
    "conversions": [0, 1, 0, 1],
    "is_returned": [False] * 4,
    "updated_at": [dt.datetime(2026, 11, 1, 12)] * 4,
}


@pytest.fixture(scope="module")
def ac() -> AnalyticalContext:
    return load_ac(RETAIL_YAML)


def _profile(schema: str, data: dict[str, list[Any]], **changes: list[Any]) -> TableProfile:
    frame = pl.DataFrame({**data, **changes})
    return table_profile_from_frames(schema, profile_columns(frame, schema))


def _holds(edge: FDEdge = STORE_REGION, schema: str = "stores") -> EdgeVerification:
    return EdgeVerification(edge, schema, holds=True)


# -- which checks, on which columns --------------------------------------------------------------
def test_each_schema_plans_its_checks_with_one_blocking_check_per_map_it_holds(ac: AnalyticalContext) -> None:
    planned = {s: [(p.name, p.severity) for p in planned_checks(ac, s)] for s in ac.schemas}
    assert planned == {
        "transactions": [("null_fraction", "WARN"), ("distinct_counts", "WARN")],
        "stores": [("null_fraction", "WARN"), ("distinct_counts", "WARN"), ("fd_store__region", "ERROR")],
        "campaigns": [
            ("null_fraction", "WARN"),
            ("distinct_counts", "WARN"),
            ("fd_campaign__channel", "ERROR"),
        ],
    }
    assert [p.edge for p in planned_checks(ac, "stores")] == [None, None, STORE_REGION]


def test_required_keys_are_the_day_column_lookup_keys_and_map_columns(ac: AnalyticalContext) -> None:
    assert list(required_columns(ac, "transactions")) == ["event_date"]
    assert list(required_columns(ac, "stores")) == ["store_id", "region"]
    assert list(required_columns(ac, "campaigns")) == ["campaign_id", "channel"]
    # The fact table's references and its own dimensions: nulls there stay as an explicit group.
    assert reference_columns(ac, "transactions") == ("store_id", "campaign_id", "customer_id")
    assert reference_columns(ac, "stores") == ()


# -- null_fraction -------------------------------------------------------------------------------
def test_null_fraction_reports_every_column_and_passes_with_null_references(ac: AnalyticalContext) -> None:
    outcome = null_fraction(ac, _profile("transactions", TRANSACTIONS))
    assert outcome.passed and outcome.severity == "WARN" and not outcome.blocking
    fractions = outcome.metadata["null_fractions"]
    assert list(fractions) == list(TRANSACTIONS)
    assert (fractions["campaign_id"], fractions["revenue"], fractions["txn_id"]) == (0.5, 0.25, 0.0)
    assert outcome.metadata["required_nulls"] == {}
    assert outcome.metadata["reference_nulls"] == {"campaign_id": 2}
    assert "unattributed" in outcome.description and "campaign_id (2 of 4 rows)" in outcome.description


def test_a_null_day_fails_null_fraction(ac: AnalyticalContext) -> None:
    days = [dt.date(2026, 11, 1), None, dt.date(2026, 11, 2), dt.date(2026, 11, 2)]
    outcome = null_fraction(ac, _profile("transactions", TRANSACTIONS, event_date=days))
    assert not outcome.passed
    assert outcome.metadata["required_nulls"] == {"event_date": 1}
    assert "event_date has 1 of 4 rows null" in outcome.description
    assert "outside every window" in outcome.description


@pytest.mark.parametrize(
    ("column", "values"), [("region", ["north", None, "south"]), ("store_id", ["S1", None, "S3"])]
)
def test_a_null_in_a_map_or_lookup_key_of_stores_fails(
    ac: AnalyticalContext, column: str, values: list[str | None]
) -> None:
    outcome = null_fraction(ac, _profile("stores", STORES, **{column: values}))
    assert not outcome.passed
    assert outcome.metadata["required_nulls"] == {column: 1}
    assert outcome.metadata["null_fractions"]["store_name"] == pytest.approx(1 / 3), "reported, not judged"


# -- distinct_counts -----------------------------------------------------------------------------
def test_distinct_counts_reports_each_dimension_column(ac: AnalyticalContext) -> None:
    outcome = distinct_counts(ac, _profile("stores", STORES))
    assert outcome.passed and outcome.severity == "WARN"
    assert outcome.metadata["distinct_counts"] == {"store_id": 3, "region": 2}
    assert outcome.metadata["dimensions"] == {"store": "store_id", "region": "region"}


def test_an_all_null_dimension_column_fails_distinct_counts_unless_the_schema_is_empty(
    ac: AnalyticalContext,
) -> None:
    outcome = distinct_counts(ac, _profile("stores", STORES, region=[None, None, None]))
    assert not outcome.passed
    assert "region (dimension region) has no non-null value" in outcome.description
    no_rows = pl.DataFrame(STORES).clear()
    empty = distinct_counts(ac, table_profile_from_frames("stores", profile_columns(no_rows, "stores")))
    assert empty.passed and empty.metadata["row_count"] == 0


def test_more_coarser_than_finer_values_fails_distinct_counts(ac: AnalyticalContext) -> None:
    profile = _profile("stores", STORES, store_id=["S1", "S1", "S1"], region=["north", "south", "east"])
    outcome = distinct_counts(ac, profile)
    assert not outcome.passed
    assert "3 distinct region but only 1 distinct store" in outcome.description


def test_an_unknown_distinct_count_is_reported_and_not_judged(ac: AnalyticalContext) -> None:
    profile = _profile("stores", STORES, store_id=["S1", "S1", "S1"], region=["north", "south", "east"])
    unknown = profile.column("store_id").model_copy(update={"distinct_count": None})
    profile = profile.model_copy(update={"columns": (unknown, *profile.columns[1:])})
    outcome = distinct_counts(ac, profile)
    assert outcome.passed and outcome.metadata["distinct_counts"]["store_id"] is None


# -- fd checks -----------------------------------------------------------------------------------
def test_a_holding_edge_passes_its_blocking_check() -> None:
    outcome = fd_check(_holds())
    assert (outcome.name, outcome.passed, outcome.severity, outcome.blocking) == (
        "fd_store__region",
        True,
        "ERROR",
        True,
    )
    assert outcome.metadata["violating_values"] == 0 and outcome.metadata["examples"] == []


def test_a_refused_edge_fails_with_its_count_examples_and_the_engines_reason() -> None:
    refused = EdgeVerification(
        STORE_REGION,
        "stores",
        holds=False,
        violating=2,
        repeated=1,
        examples=(Violation("S1", ("north", "south")), Violation(dt.date(2026, 1, 1), (None, 1.5))),
        refusal="the declared FD edge store -> region does not hold",
    )
    outcome = fd_check(refused)
    assert not outcome.passed and outcome.blocking
    assert outcome.metadata["violating_values"] == 2 and outcome.metadata["repeated_values"] == 1
    assert outcome.metadata["examples"] == [
        {"store": "S1", "region": ["north", "south"]},
        {"store": "2026-01-01", "region": [None, 1.5]},
    ]
    assert outcome.description.startswith("the declared FD edge store -> region does not hold")
    assert "refuses every rollup along store -> region" in outcome.description


def test_evaluate_gives_every_planned_check_in_order(ac: AnalyticalContext) -> None:
    outcomes = evaluate(ac, _profile("stores", STORES), [_holds()])
    assert [o.name for o in outcomes] == [p.name for p in planned_checks(ac, "stores")]
    assert all(o.passed for o in outcomes)
    assert [o.name for o in evaluate(ac, _profile("transactions", TRANSACTIONS), [])] == [
        "null_fraction",
        "distinct_counts",
    ]


@pytest.mark.parametrize(
    "verifications",
    [[], [_holds(), _holds()], [_holds(FDEdge("campaign", "channel"), "campaigns")]],
    ids=["missing", "twice", "another-schemas"],
)
def test_evaluate_refuses_verifications_that_do_not_match_the_plan(
    ac: AnalyticalContext, verifications: list[EdgeVerification]
) -> None:
    with pytest.raises(InvalidRequestError, match="needs one verification per edge"):
        evaluate(ac, _profile("stores", STORES), verifications)


# -- the outcome's JSON --------------------------------------------------------------------------
def test_every_outcome_survives_the_json_round_trip(ac: AnalyticalContext) -> None:
    outcomes = [
        *evaluate(ac, _profile("transactions", TRANSACTIONS, event_date=[None] * 4), []),
        fd_check(EdgeVerification(STORE_REGION, "stores", False, 1, 0, (Violation("S1", ("a", "b")),), "x")),
    ]
    for outcome in outcomes:
        raw = json.loads(json.dumps(outcome.to_json()))
        assert CheckOutcome.from_json(raw) == outcome


def test_metadata_is_normalized_to_plain_json() -> None:
    outcome = CheckOutcome("c", True, "WARN", "d", {"pair": (1, 2), "nested": {"k": (3,)}})
    assert outcome.metadata == {"pair": [1, 2], "nested": {"k": [3]}}
    with pytest.raises(InvalidRequestError, match="plain JSON"):
        CheckOutcome("c", True, "WARN", "d", {"day": dt.date(2026, 1, 1)})
    with pytest.raises(InvalidRequestError, match="plain JSON"):
        CheckOutcome("c", True, "WARN", "d", {"x": float("nan")})


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"name": "c", "passed": True, "severity": "INFO", "description": "d", "metadata": {}}, "severity"),
        ({"name": "c", "passed": "yes", "severity": "WARN", "description": "d", "metadata": {}}, "bool"),
        ({"name": "c", "passed": True, "severity": "WARN", "description": "d"}, "exactly the keys"),
    ],
    ids=["severity", "passed", "keys"],
)
def test_from_json_rejects_a_malformed_outcome(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        CheckOutcome.from_json(raw)
