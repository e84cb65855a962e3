"""The code location loads, and holds the platform's sensors, running by default."""

from __future__ import annotations

import dagster as dg

from metric_platform.definitions import defs


def test_the_code_location_holds_the_platform_sensors_running_by_default() -> None:
    repository = defs.get_repository_def()
    sensors = {s.name: s for s in repository.sensor_defs}
    assert set(sensors) == {
        "ledger_run_started",
        "ledger_run_success",
        "ledger_run_failure",
        "ledger_run_canceled",
        "ledger_run_reconciler",
        "ledger_projector",
        "ledger_outbox_delivery",
        "stability_refresh",
        "metric_platform_automation",
    }
    assert all(s.default_status is dg.DefaultSensorStatus.RUNNING for s in sensors.values())
