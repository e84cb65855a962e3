"""The ledger's Dagster definitions: run-status sensors (low latency) and the reconciler (durable),
writing Run* events to the platform database the settings name."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from metric_platform.defs.ledger_reconciler import ledger_reconciler_sensor
from metric_platform.defs.ledger_sensors import ledger_run_status_sensors
from metric_platform.ledger.spool import Spool
from metric_platform.ledger.store import RunEventStore
from metric_platform.settings import Settings


def ledger_sensors(settings: Settings | None = None) -> Sequence[dg.SensorDefinition]:
    """Every sensor that keeps the ledger's Run* events in step with Dagster's runs."""
    resolved = settings or Settings()

    def open_store() -> RunEventStore:
        return RunEventStore.open(resolved.platform_url)

    return [
        *ledger_run_status_sensors(open_store),
        ledger_reconciler_sensor(open_store, spool=Spool(resolved.spool_dir)),
    ]
