"""The Dagster code location that ``workspace.yaml`` loads: every AC under ``data/acs/`` (or
``$METRIC_PLATFORM_ACS_DIR``) as an asset group, with the platform's sensors and jobs
(``defs/build.py``). An AC that reads the committed sample reads the fresh copy the main job made,
when there is one, so the UI shows what the main job materialized."""

from __future__ import annotations

import os
from pathlib import Path

from metric_platform.acs import load_acs
from metric_platform.defs.build import build_definitions
from metric_platform.settings import Settings

ACS_DIR = Path(os.environ.get("METRIC_PLATFORM_ACS_DIR", Path("data") / "acs"))

_settings = Settings()
defs = build_definitions(load_acs(ACS_DIR, _settings), _settings)
