"""The code location's definitions, built from the AC files (ARCHITECTURE.md §5): one asset group
per AC with its family, cache-hint grain and profile assets and checks; the sensors that keep the
ledger, the projector, the outbox and the stability refreshes going; the dry-run job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import dagster as dg
from dagster_polars import PolarsParquetIOManager

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.defs.conditions import DEFAULT_CADENCE
from metric_platform.defs.door import Door
from metric_platform.defs.dry_run import dry_run_job
from metric_platform.defs.engine_io import EngineInputManager
from metric_platform.defs.examples import ENGINE_INPUT, PARQUET_IO, revenue_share_asset
from metric_platform.defs.ledger import ledger_sensors
from metric_platform.defs.metric_assets import metric_assets
from metric_platform.defs.platform_sensors import outbox_sensor, projector_sensor, stability_sensor
from metric_platform.defs.profile_assets import profile_assets
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings

AUTOMATION_SENSOR = "metric_platform_automation"


def build_definitions(
    acs: Sequence[AnalyticalContext],
    settings: Settings | None = None,
    *,
    today: dt.date | None = None,
    cadence: str = DEFAULT_CADENCE,
    open_backend: Callable[[AnalyticalContext], DataAPIBackend] = backend_for,
) -> dg.Definitions:
    """``today`` fixes the engine's clock (tests); None: the real calendar. ``open_backend``
    opens an AC's source (tests count its calls)."""
    resolved = settings or Settings()
    door = Door.for_acs(acs, resolved, today=today, open_backend=open_backend)
    assets: list[dg.AssetsDefinition] = []
    for ac in acs:
        assets += profile_assets(ac, door)
        assets += metric_assets(ac, door, cadence=cadence)
        example = revenue_share_asset(ac)
        if example is not None:
            assets.append(example)
    automation = dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Evaluates the automation conditions of every AC's assets (provisional refreshes, "
        "cache-hint grains following their family).",
    )
    sensors = [
        *ledger_sensors(resolved),
        projector_sensor(resolved),
        outbox_sensor(resolved),
        stability_sensor(acs, door),
        automation,
    ]
    resources = {
        ENGINE_INPUT: EngineInputManager(door),
        PARQUET_IO: PolarsParquetIOManager(base_dir=str(resolved.home / "assets")),
    }
    return dg.Definitions(assets=assets, sensors=sensors, jobs=[dry_run_job(door)], resources=resources)
