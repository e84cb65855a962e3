"""The Dagster code location that ``workspace.yaml`` loads.

Asset factories per AC (metric families as daily-partitioned assets, eager cache-hint grains,
profile assets with checks) live in ``metric_platform/defs/`` and are added here by the Dagster
issue. Today the location holds the ledger's sensors: Run* events for every run.
"""

from __future__ import annotations

import dagster as dg

from metric_platform.defs.ledger import ledger_sensors

defs = dg.Definitions(sensors=ledger_sensors())
