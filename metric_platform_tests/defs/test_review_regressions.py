"""Regressions of the Dagster side found in review, each set up as the reviewer reproduced it.

- The family cadence (``defs/conditions.py``): an AC with no provisional day (``hold_off_days: 1``,
  or no stability block) requests its newest partition once, not on every cron tick; one that
  excludes provisional days requests only the day that crossed the cutoff (``T-h``), once.
- The race between a cache-hint grain and the stability sensor: a grain materialized after a day
  crossed the cutoff, before the sensor ticks, must not make that day look refreshed.
- An empty serve (``provisional: exclude``, no stable day) is labelled excluded, not stable.
- An AC whose tenant id cannot name a directory fails at load time, naming its file; one AC whose
  engine store cannot be read does not hold back the other ACs' stability refreshes.
- The dry-run job's malformed day says how to write one; a serve whose anchor is written in another
  order than the canonical grain still reports its entries' bytes.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from contextlib import closing
from pathlib import Path

import dagster as dg
import pytest

from metric_platform.acs import load_acs
from metric_platform.defs.build import build_definitions
from metric_platform.defs.door import Door
from metric_platform.defs.dry_run import JOB_NAME
from metric_platform.defs.platform_sensors import stability_requests
from metric_platform.errors import ConfigError, StorageError
from metric_platform.works.runner import batch_context, run_work
from metric_platform.works.workspace import EngineWorkspace
from metric_platform_tests.defs.metric_defs import (
    SAMPLE_DIR,
    TODAY,
    MetricDefs,
    at,
    committed_acs,
    failure_text,
    platform_settings,
)
from metric_platform_tests.defs.test_stability_sensor import stability_tick
from metric_platform_tests.engine.conftest import write_ac_variant

HOLD_OFF = "hold_off_days: 3"
STABILITY_BLOCK = "stability:\n  timestamp: {schema: transactions, column: updated_at}\n  hold_off_days: 3\n"


def retail_variant(tmp_path: Path, replacements: dict[str, str], today: dt.date) -> MetricDefs:
    """The committed retail AC with ``replacements`` applied, reading the committed sample."""
    settings = platform_settings(tmp_path / "home")
    write_ac_variant(tmp_path / "acs", {"../sample": str(SAMPLE_DIR), **replacements})
    return MetricDefs.build(load_acs(tmp_path / "acs", settings), settings, today)


# -- the family cadence ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "replacements",
    [{HOLD_OFF: "hold_off_days: 1"}, {STABILITY_BLOCK: ""}],
    ids=["hold-off-1", "no-stability-block"],
)
def test_without_provisional_days_the_newest_partition_is_requested_once(
    instance: dg.DagsterInstance, tmp_path: Path, replacements: dict[str, str]
) -> None:
    retail = retail_variant(tmp_path, replacements, TODAY)
    # The first evaluation takes the tick it sees as handled (the automation sensor runs from the start).
    first = retail.evaluate(instance, at(TODAY, 0, 5))
    missing = retail.evaluate(instance, at(TODAY, 1, 5), first)
    assert retail.requested(missing, metrics_only=True)["retail/spend"] == {"2026-11-20"}

    run = retail.materialize(instance, ["retail/spend"], partition="2026-11-20")
    assert run.metadata("retail/spend")["stability"].startswith("stable")

    # Later cron ticks: the partition is final, never requested again. (Dagster holds back the tick
    # right after a request; on the next one the still missing revenue is asked for again: the
    # control that the tick did fire.)
    after_request = retail.evaluate(instance, at(TODAY, 2, 5), missing)
    assert "retail/spend" not in retail.requested(after_request, metrics_only=True)
    next_tick = retail.evaluate(instance, at(TODAY, 3, 5), after_request)
    requested = retail.requested(next_tick, metrics_only=True)
    assert "retail/spend" not in requested
    assert requested["retail/revenue"] == {"2026-11-20"}


def test_with_provisional_days_excluded_only_the_crossed_day_is_requested_once(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    retail = retail_variant(tmp_path, {HOLD_OFF: f"{HOLD_OFF}\n  provisional: exclude"}, TODAY)
    # On 21 Nov the cutoff is 18 Nov: 19 and 20 are provisional, served empty; 18 just crossed.
    first = retail.evaluate(instance, at(TODAY, 0, 5))
    assert retail.requested(first, metrics_only=True) == {}
    missing = retail.evaluate(instance, at(TODAY, 1, 5), first)
    families = {f"retail/{name}" for name in retail.ac().families}
    assert retail.requested(missing, metrics_only=True) == {family: {"2026-11-18"} for family in families}

    retail.materialize(instance, ["retail/spend"], partition="2026-11-18")
    after_request = retail.evaluate(instance, at(TODAY, 2, 5), missing)
    assert "retail/spend" not in retail.requested(after_request, metrics_only=True)
    # The next tick asks again for the crossed day of the families still missing it, and for nothing else.
    next_tick = retail.evaluate(instance, at(TODAY, 3, 5), after_request)
    assert retail.requested(next_tick, metrics_only=True) == {
        family: {"2026-11-18"} for family in families - {"retail/spend"}
    }


# -- the race between a cache-hint grain and the stability sensor -----------------------------------------


def test_a_grain_materialized_after_the_cutoff_passed_leaves_the_crossed_day_to_the_sensor(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    settings = platform_settings(tmp_path)
    monday = MetricDefs.build(committed_acs(settings), settings, dt.date(2026, 11, 16))  # cutoff 13 Nov
    monday.materialize(instance, ["retail/spend"], first="2026-11-09", last="2026-11-15")
    pinned = monday.pinned_days("spend", ("campaign", "day"))
    assert {day for day, provisional in pinned.items() if provisional} == {"2026-11-14", "2026-11-15"}

    tuesday = monday.on(dt.date(2026, 11, 17))  # cutoff 14 Nov: the 14th crossed
    # The cadence refreshes the provisional days, and the week follows before the sensor ticks.
    tuesday.materialize(instance, ["retail/spend"], partition="2026-11-15")
    tuesday.materialize(instance, ["retail/spend"], partition="2026-11-16")
    week = tuesday.materialize(instance, ["retail/spend/channel/week"], partition="2026-11-09")
    # The stale 14th is fetched for the week, not rolled up from its stale slice.
    assert [(c.window.start, c.window.end) for c in week.backend_calls if c.window] == [
        (dt.date(2026, 11, 14), dt.date(2026, 11, 14))
    ]

    # ... and is not memoized at the family's grain by the week: its slice is still the stale one.
    [entry] = [
        e
        for e in tuesday.engine_entries()
        if e.key.dataset_id == "spend"
        and e.key.anchor == ("campaign", "day")
        and e.key.slice_day == dt.date(2026, 11, 14)
    ]
    assert (entry.pinned, entry.provisional, entry.meta.stability_cutoff) == (
        True,
        True,
        dt.date(2026, 11, 13),
    )
    requests = stability_tick(tuesday, instance)
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("2026-11-14", "stability:retail:2026-11-14:cutoff=2026-11-14")
    ]
    assert [k.to_user_string() for k in requests[0].asset_selection or []] == ["retail/spend"]


# -- the stability label of an empty serve ------------------------------------------------------------------


def test_an_empty_serve_of_an_ac_excluding_provisional_days_is_labelled_excluded(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    retail = retail_variant(tmp_path, {HOLD_OFF: f"{HOLD_OFF}\n  provisional: exclude"}, TODAY)

    run = retail.materialize(instance, ["retail/spend"], partition="2026-11-20")  # provisional: empty

    metadata = run.metadata("retail/spend")
    assert metadata["serving_path"] == "empty"
    assert metadata["dagster/row_count"] == 0
    assert metadata["stability"].startswith("excluded")
    assert "2026-11-18" in metadata["stability"]
    assert "stable (" not in metadata["stability"]


# -- AC loading and one broken AC among several -------------------------------------------------------------


def test_a_tenant_id_that_cannot_name_a_directory_fails_at_load_naming_the_file(tmp_path: Path) -> None:
    path = write_ac_variant(
        tmp_path / "acs", {"../sample": str(SAMPLE_DIR), "tenant_id: acme": "tenant_id: Acme Corp"}
    )

    with pytest.raises(ConfigError) as raised:
        load_acs(tmp_path / "acs", platform_settings(tmp_path / "home"))

    [issue] = raised.value.issues
    assert (issue.file, issue.path) == (str(path), "tenant_id")
    assert "'Acme Corp'" in issue.message
    assert str(path) in str(raised.value) and "tenant_id" in str(raised.value)


def test_one_unreadable_ac_store_does_not_hold_back_the_other_acs_stability_refreshes(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    settings = platform_settings(tmp_path)
    acs = committed_acs(settings, ("outlets", "retail"))
    # On 19 Nov retail (hold-off 3) holds 17 Nov back and outlets (hold-off 2) 18 Nov.
    first = MetricDefs.build(acs, settings, dt.date(2026, 11, 19))
    first.materialize(instance, ["retail/spend"], partition="2026-11-17")
    first.materialize(instance, ["outlets/orders"], partition="2026-11-18")
    next_day = first.on(dt.date(2026, 11, 20))  # both days crossed
    both = [(r.partition_key, r.run_key) for r in stability_tick(next_day, instance)]
    outlets = ("2026-11-18", "stability:outlets:2026-11-18:cutoff=2026-11-18")
    assert both == [outlets, ("2026-11-17", "stability:retail:2026-11-17:cutoff=2026-11-17")]

    retail = next_day.ac("retail")
    corrupt_sqlite(settings.for_project(retail.tenant_id, str(retail.project_id)).manifest_url)
    with pytest.raises(StorageError, match="malformed"):
        stability_requests(retail, Door.for_acs(acs, settings, today=next_day.today))

    assert [(r.partition_key, r.run_key) for r in stability_tick(next_day, instance)] == [outlets]


def corrupt_sqlite(url: str) -> None:
    """Keep the file a WAL-mode SQLite database by its header, so that a dry run opens it rather than
    standing in an empty in-memory manifest, and overwrite every page after it: reads fail."""
    path = Path(url.split(":///", 1)[1])
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for leftover in path.parent.glob(f"{path.name}-*"):  # the emptied WAL and its index
        leftover.unlink()
    data = path.read_bytes()
    assert data[18] == 2, "a WAL-mode database"
    path.write_bytes(data[:100] + b"\xff" * (len(data) - 100))


# -- the dry-run job and a serve's figures ----------------------------------------------------------------


def test_the_dry_run_job_says_how_to_write_a_malformed_day(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    settings = platform_settings(tmp_path / "home")
    defs = build_definitions(committed_acs(settings), settings, today=TODAY)
    job = defs.resolve_job_def(JOB_NAME)

    result = job.execute_in_process(
        run_config={
            "ops": {"dry_run_serve": {"config": {"ac": "retail", "family": "revenue", "start": "2026/11/01"}}}
        },
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    text = failure_text(result)
    assert "YYYY-MM-DD" in text and "'2026/11/01'" in text and "start" in text
    assert "ValueError" not in text and "Invalid isoformat" not in text
    [failure] = [e for e in result.all_events if e.event_type is dg.DagsterEventType.STEP_FAILURE]
    error = failure.step_failure_data.error
    assert error is not None and error.cls_name == "Failure"


@pytest.mark.parametrize("anchor", [["day", "region"], ["region", "day"]], ids=["non-canonical", "canonical"])
def test_a_serve_reports_the_bytes_of_its_entries_whatever_the_anchor_order(
    tmp_path: Path, anchor: list[str]
) -> None:
    settings = platform_settings(tmp_path / "home")
    [retail] = committed_acs(settings)
    workspace = EngineWorkspace(retail, settings, today=TODAY)
    params = {"family": "revenue", "anchor": anchor, "pin": True, "figures": True}
    days = (dt.date(2026, 11, 1), dt.date(2026, 11, 3))

    result = run_work(workspace, batch_context(workspace, "engine.serve", params, days=days))

    assert result.outcome is not None
    summary = result.outcome.summary
    buckets = summary["buckets"]
    assert [b["bucket"] for b in buckets] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert all(isinstance(b["bytes"], int) and b["bytes"] > 0 for b in buckets)
    assert summary["bytes"] == sum(b["bytes"] for b in buckets) > 0
