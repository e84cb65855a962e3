"""The stability refresh (``defs/platform_sensors.py``): when the clock passes the cutoff, the
``stability_refresh`` sensor requests one final refresh of each family partition whose memoized day
became stable, once per cutoff (the run key holds it); after that run the cache-hint grains whose
buckets hold the day follow by their automation conditions, and then everything rests.

"The clock passes" is the definitions rebuilt with ``today + 1`` on the same home and Dagster
instance, as a code location reloaded the next day.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from metric_platform.defs.platform_sensors import CUTOFF_TAG, REFRESH_TAG
from metric_platform_tests.defs.metric_defs import (
    TODAY,
    TOMORROW,
    MetricDefs,
    at,
    committed_acs,
    platform_settings,
)

SENSOR = "stability_refresh"


@pytest.fixture
def retail(tmp_path: Path) -> MetricDefs:
    settings = platform_settings(tmp_path)
    return MetricDefs.build(committed_acs(settings), settings, TODAY)


def stability_tick(metric_defs: MetricDefs, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    """One evaluation of the sensor, as the daemon would run it; [] when it skips."""
    sensor = metric_defs.defs.resolve_sensor_def(SENSOR)
    with dg.build_sensor_context(instance=instance, definitions=metric_defs.defs) as context:
        result = sensor(context)
    if isinstance(result, dg.SkipReason):
        return []
    assert isinstance(result, dg.SensorResult), result
    return [r for r in result.run_requests or [] if isinstance(r, dg.RunRequest)]


def summary(requests: list[dg.RunRequest]) -> list[tuple[str | None, list[str], str | None, dict[str, str]]]:
    return [
        (
            r.partition_key,
            sorted(k.to_user_string() for k in r.asset_selection or []),
            r.run_key,
            {k: v for k, v in r.tags.items() if k in (REFRESH_TAG, CUTOFF_TAG)},
        )
        for r in requests
    ]


def run_request(metric_defs: MetricDefs, instance: dg.DagsterInstance, request: dg.RunRequest) -> None:
    """Run what the sensor asked for, as the daemon would launch it."""
    assert request.asset_selection is not None
    run = metric_defs.materialize(
        instance, list(request.asset_selection), partition=request.partition_key, tags=request.tags
    )
    day = dt.date.fromisoformat(request.partition_key or "")
    # The day is recomputed (a provisional memo is never an exact hit), one backend call per family.
    assert [(c.window.start, c.window.end) for c in run.backend_calls if c.window] == [(day, day)] * len(
        request.asset_selection
    )
    stability = metric_defs.ac().stability
    assert stability is not None
    cutoff = metric_defs.today - dt.timedelta(days=stability.hold_off_days)
    for asset_key in request.asset_selection:
        assert run.metadata(asset_key.to_user_string())["stability"] == f"stable (cutoff {cutoff})"


def test_the_day_that_crossed_the_cutoff_is_refreshed_once_per_cutoff(
    instance: dg.DagsterInstance, retail: MetricDefs
) -> None:
    retail.materialize(instance, ["retail/revenue", "retail/spend"], first="2026-11-17", last="2026-11-20")
    assert stability_tick(retail, instance) == []  # 17 and 18 were stable when served; 19 and 20 wait

    tomorrow = retail.on(TOMORROW)  # cutoff 2026-11-19: day 19 crossed, day 20 did not
    requests = stability_tick(tomorrow, instance)
    assert summary(requests) == [
        (
            "2026-11-19",
            ["retail/revenue", "retail/spend"],
            "stability:retail:2026-11-19:cutoff=2026-11-19",
            {REFRESH_TAG: "final", CUTOFF_TAG: "2026-11-19"},
        )
    ]
    # A repeated tick under the same cutoff is the same request: Dagster runs a run key once.
    assert summary(stability_tick(tomorrow, instance)) == summary(requests)
    # Had the run not happened, the next day's cutoff would ask again, under new run keys.
    day_after = retail.on(TOMORROW + dt.timedelta(days=1))
    assert [(r.partition_key, r.run_key) for r in stability_tick(day_after, instance)] == [
        ("2026-11-19", "stability:retail:2026-11-19:cutoff=2026-11-20"),
        ("2026-11-20", "stability:retail:2026-11-20:cutoff=2026-11-20"),
    ]

    run_request(tomorrow, instance, requests[0])
    assert tomorrow.pinned_days("revenue", ("region", "day"))["2026-11-19"] is False  # stable now
    assert stability_tick(tomorrow, instance) == []


def test_the_grains_follow_the_final_refresh_of_a_day_and_then_everything_rests(
    instance: dg.DagsterInstance, retail: MetricDefs
) -> None:
    # On 2 Nov (cutoff 30 Oct) October's last day is provisional, inside a complete month and a
    # complete week (26 Oct .. 1 Nov) whose grain partitions exist already.
    day_one = retail.on(dt.date(2026, 11, 2))
    # The conditions are evaluated once before the days exist (the automation sensor runs from the
    # start): their first evaluation takes what it sees as handled (test_automation.py).
    start = day_one.evaluate(instance, at(day_one.today, 0, 5))
    day_one.materialize(instance, ["retail/revenue"], first="2026-10-01", last="2026-11-01")
    day_one.materialize(instance, ["retail/spend"], first="2026-10-26", last="2026-11-01")
    first = day_one.evaluate(instance, at(day_one.today, 0, 10), start)
    grains: dict[str, set[str | None]] = {
        "retail/revenue/region/month": {"2026-10-01"},
        "retail/spend/channel/week": {"2026-10-26"},
        "retail/revenue/region": {None},
    }
    assert day_one.requested(first) == grains
    for asset, partitions in grains.items():
        (partition,) = partitions
        day_one.materialize(instance, [asset], partition=partition)
    rested = day_one.evaluate(instance, at(day_one.today, 0, 20), first)
    assert day_one.requested(rested) == {}

    day_two = day_one.on(dt.date(2026, 11, 3))  # cutoff 31 Oct
    (request,) = stability_tick(day_two, instance)
    assert (request.partition_key, request.run_key) == (
        "2026-10-31",
        "stability:retail:2026-10-31:cutoff=2026-10-31",
    )
    # Before the refresh runs only the family cadence asks (today's provisional and newest days).
    cadence = day_two.evaluate(instance, at(day_two.today, 0, 5), rested)
    families = [f"retail/{name}" for name in day_two.ac().families]
    assert day_two.requested(cadence, metrics_only=True) == {
        family: {"2026-11-01", "2026-11-02"} for family in families
    }
    settled = day_two.evaluate(instance, at(day_two.today, 0, 6), cadence)
    assert day_two.requested(settled) == {}

    run_request(day_two, instance, request)
    following = day_two.evaluate(instance, at(day_two.today, 0, 10), settled)
    assert day_two.requested(following) == grains  # the buckets that hold 31 October

    assert day_two.requested(day_two.evaluate(instance, at(day_two.today, 0, 20), following)) == {}
    assert stability_tick(day_two, instance) == []
