"""Engine-backed works: what the neutral execution scaffold runs for the CLI and for Dagster.

``execution/`` never names a metric (seed 000 AC-5); these works do, and are supplied to
``MetricExecutionEngine`` by whoever starts the work (``cli_runner``, ``defs/``).
"""

from __future__ import annotations

from metric_platform.works.engine_works import engine_works
from metric_platform.works.workspace import EngineWorkspace

__all__ = ["EngineWorkspace", "engine_works"]
