"""The dry-run job ``metric_dry_run`` (issue 6 item 8): it serves through the execution door for
real and writes nothing: no asset materialization in Dagster, not one file under the platform
home (no engine manifest or entry, no platform database, no spool), and its output's metadata says
which writes a real run would have made. A request it cannot serve fails with a message saying so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from metric_platform.acs import load_acs
from metric_platform.defs.build import build_definitions
from metric_platform.defs.dry_run import JOB_NAME
from metric_platform.defs.ledger_sensors import DRY_RUN_TAG
from metric_platform.settings import Settings
from metric_platform_tests.defs.metric_defs import failure_text

REPO = Path(__file__).resolve().parents[2]
OP = "dry_run_serve"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "platform"


@pytest.fixture
def job(home: Path) -> dg.JobDefinition:
    settings = Settings(home=home)
    defs = build_definitions(load_acs(REPO / "data" / "acs", settings), settings, today=dt.date(2026, 11, 21))
    return defs.resolve_job_def(JOB_NAME)


def run(
    job: dg.JobDefinition, instance: dg.DagsterInstance, config: Mapping[str, Any]
) -> dg.ExecuteInProcessResult:
    return job.execute_in_process(
        run_config={"ops": {OP: {"config": dict(config)}}}, instance=instance, raise_on_error=False
    )


def created_under(home: Path) -> list[Path]:
    return sorted(home.rglob("*")) if home.exists() else []


def test_a_dry_run_serves_and_writes_nothing(
    job: dg.JobDefinition, instance: dg.DagsterInstance, home: Path, no_backstop: list[str]
) -> None:
    result = run(
        job, instance, {"ac": "retail", "family": "revenue", "start": "2026-11-01", "end": "2026-11-07"}
    )

    assert result.success
    assert result.dagster_run.tags[DRY_RUN_TAG] == "true"  # the ledger's sensors skip it
    everything = instance.all_logs(result.run_id)
    assert not [e for e in everything if e.dagster_event_type is dg.DagsterEventType.ASSET_MATERIALIZATION]
    assert instance.get_asset_keys() == []
    assert created_under(home) == []  # no engine manifest or entry, no platform database, no spool

    [output] = [e for e in result.all_events if e.event_type is dg.DagsterEventType.STEP_OUTPUT]
    metadata = output.step_output_data.metadata
    suppressed = metadata["writes_suppressed"]
    assert isinstance(suppressed, dg.JsonMetadataValue)
    assert isinstance(suppressed.data, dict)
    # What a real run would have written: the served slices and the ledger's step events.
    assert suppressed.data["engine.publish"] > 0
    assert suppressed.data["ledger.append"] == 2  # StepStarted, StepCompleted
    # It did serve: the week's revenue, by the family's base grain, computed by the backend.
    assert metadata["served_from_grain"] == dg.MetadataValue.text("store, day")
    assert metadata["backend_ranges"] == dg.MetadataValue.text("2026-11-01..2026-11-07")
    row_count = metadata["dagster/row_count"]
    assert isinstance(row_count, dg.IntMetadataValue)
    assert row_count.value is not None and row_count.value > 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"ac": "nope", "family": "revenue"}, "unknown AC 'nope'; known ACs: outlets, retail"),
        (
            {"ac": "retail", "family": "nope"},
            "unknown metric family 'nope' in AC 'retail' (known: any_returned, average_sale",
        ),
        (
            {"ac": "retail", "family": "revenue", "anchor": ["bogus"]},
            "unknown dimension 'bogus' in AC 'retail'",
        ),
    ],
    ids=["ac", "family", "anchor"],
)
@pytest.mark.usefixtures("no_backstop")
def test_a_dry_run_of_something_unknown_fails_saying_what_exists(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    home: Path,
    config: Mapping[str, Any],
    message: str,
) -> None:
    result = run(job, instance, config)

    assert not result.success
    assert message in failure_text(result)
    assert created_under(home) == []
