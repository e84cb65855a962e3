"""The automation conditions of the metric assets (``defs/conditions.py``), evaluated with
``dg.evaluate_automation_conditions`` at fixed times on the definitions' own ``today``.

- Cache-hint grains (daily, weekly, monthly, unpartitioned) are requested once every upstream day
  of their bucket is materialized, for every such bucket (not only the latest), and not before.
- The family cadence requests the provisional days and the newest one on each cron tick, and
  nothing more within the same hour.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from metric_platform.acs import load_acs
from metric_platform_tests.defs.metric_defs import (
    SAMPLE_DIR,
    TODAY,
    MetricDefs,
    at,
    committed_acs,
    days,
)
from metric_platform_tests.defs.metric_defs import platform_settings as settings_under
from metric_platform_tests.engine.conftest import write_ac_variant

REVENUE_FAMILY = "  - name: revenue\n    family_root: {schema: transactions, column: revenue}\n"


def daily_grain_retail(tmp_path: Path, today: dt.date) -> MetricDefs:
    """The retail AC with revenue's base grain at (store, day), so that its (region, day) cache-hint
    grain is an asset of its own, partitioned by day (the committed AC has no such grain)."""
    settings = settings_under(tmp_path / "home")
    write_ac_variant(
        tmp_path / "acs",
        {"../sample": str(SAMPLE_DIR), REVENUE_FAMILY: REVENUE_FAMILY + "    base_grain: [store, day]\n"},
    )
    return MetricDefs.build(load_acs(tmp_path / "acs", settings), settings, today)


def test_cache_hint_grains_are_requested_once_their_upstream_days_are_materialized(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    today = dt.date(2026, 11, 2)
    retail = daily_grain_retail(tmp_path, today)
    assert "retail/revenue/region/day" in {k.to_user_string() for k in retail.metric_keys}

    nothing_yet = retail.evaluate(instance, at(today, 0, 5))
    assert retail.requested(nothing_yet) == {}

    # October without its last day, and the second half of October for spend: the month and the
    # week 26 Oct .. 1 Nov each miss a day.
    retail.materialize(instance, ["retail/revenue"], first="2026-10-01", last="2026-10-30")
    retail.materialize(instance, ["retail/spend"], first="2026-10-19", last="2026-10-31")
    partial = retail.evaluate(instance, at(today, 0, 15), nothing_yet)
    assert retail.requested(partial) == {
        "retail/revenue/region/day": set(days("2026-10-01", "2026-10-30")),
        "retail/revenue/region": {None},
        "retail/spend/channel/week": {"2026-10-19"},  # not the latest week: all windows are followed
    }
    # The automation sensor ticks every 30 s: the tick after a request takes it as handled. (An
    # upstream update landing before that tick is taken as handled with it: since_last_handled.)
    settled = retail.evaluate(instance, at(today, 0, 16), partial)
    assert retail.requested(settled) == {}

    retail.materialize(instance, ["retail/revenue"], partition="2026-10-31")
    retail.materialize(instance, ["retail/spend"], partition="2026-11-01")
    complete = retail.evaluate(instance, at(today, 0, 25), settled)
    assert retail.requested(complete) == {
        "retail/revenue/region/day": {"2026-10-31"},
        "retail/revenue/region/month": {"2026-10-01"},
        "retail/revenue/region": {None},
        "retail/spend/channel/week": {"2026-10-26"},
    }

    # Requested once: nothing changed upstream since.
    assert retail.requested(retail.evaluate(instance, at(today, 0, 35), complete)) == {}


def test_the_family_cadence_requests_the_provisional_and_newest_days_on_each_tick(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    settings = settings_under(tmp_path)
    retail = MetricDefs.build(committed_acs(settings), settings, TODAY)
    families = [f"retail/{name}" for name in retail.ac().families]
    provisional_and_newest = {"2026-11-19", "2026-11-20"}  # TODAY - 3 < day < TODAY

    # The first evaluation only starts the cron clock (Dagster's cron_tick_passed needs an earlier one).
    before = retail.evaluate(instance, at(TODAY - dt.timedelta(days=1), 23, 50))
    assert retail.requested(before, metrics_only=True) == {}

    tick = retail.evaluate(instance, at(TODAY, 0, 5), before)
    assert retail.requested(tick, metrics_only=True) == {
        family: provisional_and_newest for family in families
    }

    same_hour = retail.evaluate(instance, at(TODAY, 0, 35), tick)
    assert retail.requested(same_hour) == {}

    # A provisional day is refreshed on every tick, materialized or not (its materialization is
    # seen by the sensor's next evaluation, 30 s later, before the next tick).
    retail.materialize(instance, ["retail/revenue"], first="2026-11-19", last="2026-11-20")
    after_run = retail.evaluate(instance, at(TODAY, 0, 50), same_hour)
    assert retail.requested(after_run, metrics_only=True) == {"retail/revenue/region": {None}}
    next_tick = retail.evaluate(instance, at(TODAY, 1, 5), after_run)
    assert retail.requested(next_tick, metrics_only=True) == {
        family: provisional_and_newest for family in families
    }


def test_a_grain_whose_days_were_materialized_before_its_first_evaluation_is_requested(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """A cache-hint grain added to an AC whose days are already materialized (or evaluated for the
    first time after a backfill, or after its condition changed) must still materialize its complete
    buckets, as conditions.py promises ("the first evaluation materializes the buckets of days
    already there"): those days may never update again, so nothing later would trigger them."""
    today = dt.date(2026, 11, 2)
    settings = settings_under(tmp_path)
    retail = MetricDefs.build(committed_acs(settings), settings, today)
    retail.materialize(instance, ["retail/spend"], first="2026-10-26", last="2026-11-01")

    first = retail.evaluate(instance, at(today, 0, 5))
    assert retail.requested(first) == {"retail/spend/channel/week": {"2026-10-26"}}
    assert retail.requested(retail.evaluate(instance, at(today, 0, 6), first)) == {}
