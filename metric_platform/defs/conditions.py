"""Automation conditions of an AC's assets, built deliberately around what Dagster 1.13 does
(ARCHITECTURE.md §7; each is tested with ``evaluate_automation_conditions`` at fixed times).

- **Family assets** (daily): the partitions still inside the hold-off window are provisional, and
  are re-materialized on a cadence (a cron tick), each one recomputed; the newest partition is
  materialized on the first tick after its day ends. An AC with no provisional day (no stability
  block, or ``hold_off_days`` ≤ 1) materializes its newest partition once; one whose provisional
  days are excluded (``provisional: exclude``) materializes each day once, when it crosses.
  On day ``T`` with ``hold_off_days = h`` the provisional days are ``T-h+1 .. T-1``:
  ``in_latest_time_window(lookback_delta=d)`` selects the latest ``d`` daily partitions (at least
  one), so ``d = max(h - 1, 1)``. The day that has just crossed the cutoff (``T-h``) gets its one
  final refresh from the stability sensor (``platform_sensors.py``), not from the cadence.
- **Cache-hint grains** (partitioned): ``eager()`` without its ``in_latest_time_window()``. Plain
  ``eager()`` only looks at the latest window, so a weekly or monthly bucket whose day was
  refreshed after the bucket stopped being the latest (the final refresh of a day, a backfill of old
  days) would never follow; without it, every partition whose days are all materialized follows
  their updates, and the first evaluation materializes the buckets of days already there.
- **Cache-hint grains without time** (unpartitioned): plain ``eager()`` never fires while any
  upstream daily partition is missing, which, with partitions since the AC's start date, is always.
  The engine serves the whole range whatever is memoized, so ``~any_deps_missing`` is dropped and
  replaced by "at least one upstream partition exists".
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg

from metric_platform.semantics.spec import AnalyticalContext, ProvisionalPolicy

# Dagster's condition operators (&, ~, since_last_handled) do not type-check under mypy --strict
# (their generic self types clash): the conditions are built untyped and checked by tests.
AC: Any = dg.AutomationCondition
Condition = dg.AutomationCondition[dg.AssetKey]

# Provisional partitions are recomputed hourly by default: late rows reach them within the hour.
DEFAULT_CADENCE = "0 * * * *"


def provisional_lookback_days(ac: AnalyticalContext) -> int:
    hold_off = ac.stability.hold_off_days if ac.stability is not None else 0
    return max(hold_off - 1, 1)


def family_condition(ac: AnalyticalContext, cadence: str = DEFAULT_CADENCE) -> Condition:
    """What a family's partitions need on each cadence tick (see the module docstring)."""
    stability = ac.stability
    hold_off = stability.hold_off_days if stability is not None else 0
    tick = AC.cron_tick_passed(cadence).since_last_handled() & ~AC.in_progress()
    condition: Condition
    if stability is not None and stability.provisional is ProvisionalPolicy.EXCLUDE and hold_off >= 1:
        # Days inside the hold-off window are served empty: materialize each day once, when it
        # crosses the cutoff (the latest h partitions minus the latest h - 1 is day T-h).
        crossing = AC.in_latest_time_window(lookback_delta=dt.timedelta(days=hold_off))
        if hold_off >= 2:
            crossing = crossing & ~AC.in_latest_time_window(lookback_delta=dt.timedelta(days=hold_off - 1))
        condition = (crossing & AC.missing() & tick).with_label(f"stable day, once ({cadence})")
    elif hold_off >= 2:
        lookback = dt.timedelta(days=provisional_lookback_days(ac))
        condition = (AC.in_latest_time_window(lookback_delta=lookback) & tick).with_label(
            f"provisional refresh ({cadence})"
        )
    else:
        # No provisional day: the newest partition once, never again (it is final when made).
        condition = (AC.in_latest_time_window() & AC.missing() & tick).with_label(
            f"newest day, once ({cadence})"
        )
    return condition


def grain_condition(*, partitioned: bool) -> Condition:
    """A cache-hint grain follows its family's partitions (see the module docstring)."""
    # ``since_last_handled()`` counts a target's first evaluation as "handled", which would use up
    # ``newly_missing`` there: a bucket whose days were materialized before the grain was first
    # evaluated (a grain added to an AC, automation turned on after a backfill) would never be
    # requested, its stable days never changing again. Here only a request or an update handles it.
    handled = (AC.newly_requested() | AC.newly_updated()).with_label("handled")
    eager = AC.eager().without(AC.in_latest_time_window()).replace("handled", handled)
    condition: Condition
    if partitioned:
        condition = eager.with_label("eager (every window)")
    else:
        condition = (eager.without(~AC.any_deps_missing()) & AC.any_deps_match(~AC.missing())).with_label(
            "eager (whole range)"
        )
    return condition
