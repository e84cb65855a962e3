"""The code location loads, and what it holds is reviewed: a snapshot of its assets (keys, groups,
dependencies, partitions, automation conditions, backfill policies), asset checks, sensors (with
their default status) and jobs, generated from the live definitions over ``data/acs``.

A change to the ACs or to ``defs/`` that changes the snapshot fails here on purpose: review the
diff, then refresh the snapshot with ``METRIC_PLATFORM_UPDATE_SNAPSHOTS=1``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from metric_platform.acs import load_acs
from metric_platform.defs.metric_assets import family_key
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform_tests.defs.metric_defs import ACS_DIR, REPO_ROOT, TODAY, MetricDefs, platform_settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
UPDATE_ENV = "METRIC_PLATFORM_UPDATE_SNAPSHOTS"
ASSET_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def _partitions(partitions: dg.PartitionsDefinition[Any] | None) -> dict[str, Any] | None:
    if partitions is None:
        return None
    if not isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        return {"kind": type(partitions).__name__}
    return {
        "kind": type(partitions).__name__,
        "start": partitions.start.date().isoformat(),
        "end": partitions.end.date().isoformat() if partitions.end is not None else None,
        "cron": partitions.cron_schedule,
        "day_offset": (
            partitions.day_offset
            if isinstance(partitions, dg.WeeklyPartitionsDefinition | dg.MonthlyPartitionsDefinition)
            else None
        ),
        "timezone": partitions.timezone,
    }


def describe(defs: dg.Definitions) -> dict[str, Any]:
    """What the snapshot holds: the parts of the definitions a reviewer should see change."""
    graph = defs.resolve_asset_graph()
    repository = defs.get_repository_def()
    assets: dict[str, Any] = {}
    for asset_key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(asset_key)
        condition = node.automation_condition
        assets[asset_key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "automation": condition.get_label() if condition is not None else None,
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy is not None else None,
            "kinds": sorted(node.kinds),
        }
    return {
        "assets": assets,
        "checks": sorted(k.to_user_string() for k in graph.asset_check_keys),
        "sensors": {
            s.name: {"kind": type(s).__name__, "default_status": s.default_status.value}
            for s in sorted(repository.sensor_defs, key=lambda s: s.name)
        },
        "schedules": sorted(s.name for s in repository.schedule_defs),
        "jobs": sorted(name for name in repository.job_names if not name.startswith("__")),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[AnalyticalContext], dg.Definitions]:
    settings = platform_settings(tmp_path_factory.mktemp("home"))
    acs = load_acs(ACS_DIR, settings)
    return acs, MetricDefs.build(acs, settings, TODAY).defs


def test_the_definitions_match_their_reviewed_snapshot(
    built: tuple[list[AnalyticalContext], dg.Definitions],
) -> None:
    _, defs = built
    dg.Definitions.validate_loadable(defs)
    live = json.dumps(describe(defs), indent=2, sort_keys=True) + "\n"
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(live, encoding="utf-8")
    refresh = (
        f"review the difference, then refresh the snapshot with "
        f"{UPDATE_ENV}=1 .venv/bin/pytest {Path(__file__).relative_to(REPO_ROOT)}"
    )
    assert SNAPSHOT.is_file(), f"{SNAPSHOT} is missing: {refresh}"
    stored = SNAPSHOT.read_text(encoding="utf-8")
    assert json.loads(live) == json.loads(stored), f"the definitions changed from {SNAPSHOT}: {refresh}"


def test_the_code_location_loads_the_same_definitions(
    built: tuple[list[AnalyticalContext], dg.Definitions],
) -> None:
    """``metric_platform.definitions`` (what workspace.yaml loads) holds what ``build_definitions``
    makes of ``data/acs``."""
    from metric_platform import definitions

    dg.Definitions.validate_loadable(definitions.defs)
    _, defs = built
    assert describe(definitions.defs) == describe(defs)


def test_every_asset_key_part_is_a_valid_dagster_name(
    built: tuple[list[AnalyticalContext], dg.Definitions],
) -> None:
    _, defs = built
    bad = [
        k.to_user_string()
        for k in defs.resolve_asset_graph().get_all_asset_keys()
        if not all(ASSET_NAME.match(part) for part in k.path)
    ]
    assert bad == []


def test_family_assets_carry_their_family_fingerprint_as_code_version(
    built: tuple[list[AnalyticalContext], dg.Definitions],
) -> None:
    acs, defs = built
    graph = defs.resolve_asset_graph()
    versions = {
        family_key(ac, family).to_user_string(): graph.get(family_key(ac, family)).code_version
        for ac in acs
        for family in ac.families.values()
    }
    expected = {family_key(ac, f).to_user_string(): f.fingerprint for ac in acs for f in ac.families.values()}
    assert versions == expected
    assert len(set(expected.values())) == len(expected), "fingerprints must tell the families apart"


def test_weekly_partitions_start_on_the_first_monday_of_the_ac(
    built: tuple[list[AnalyticalContext], dg.Definitions],
) -> None:
    acs, defs = built
    graph = defs.resolve_asset_graph()
    weekly = [
        node for node in graph.asset_nodes if isinstance(node.partitions_def, dg.WeeklyPartitionsDefinition)
    ]
    assert weekly, "data/acs declares a week cache-hint grain (retail: spend by channel and week)"
    for node in weekly:
        partitions = node.partitions_def
        assert isinstance(partitions, dg.WeeklyPartitionsDefinition)
        ac_start = next(ac for ac in acs if ac.name == node.key.path[0]).partitions.start_date
        keys = partitions.get_partition_keys(current_time=dt.datetime(2026, 12, 31, tzinfo=dt.UTC))[:3]
        starts = [dt.date.fromisoformat(k) for k in keys]
        assert [d.weekday() for d in starts] == [0, 0, 0], f"{node.key.to_user_string()}: {keys}"
        assert ac_start <= starts[0] < ac_start + dt.timedelta(days=7)
