"""A test-only code location whose backend never answers: the run a test kills mid-step
(``test_killed_run.py``).

It is the platform's own definitions (``build_definitions`` over ``data/acs``, the platform home
from ``METRIC_PLATFORM_HOME``, the engine clock fixed at :data:`TODAY`), except that opening an
AC's backend writes the process id to the file ``$METRIC_PLATFORM_TEST_PID_FILE`` names and then
sleeps: the step is then inside the execution door (its StepStarted recorded) and the test knows
which process to kill. Loaded by ``dagster asset materialize -m`` in a subprocess; the test imports
only its constants (the definitions are built lazily, from that subprocess's environment).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import dagster as dg

from metric_platform.acs import load_acs
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.defs.build import build_definitions
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings

PID_FILE_ENV = "METRIC_PLATFORM_TEST_PID_FILE"
TODAY = dt.date(2026, 11, 21)
BLOCK_SECONDS = 300.0  # far beyond the test's budget: the process is killed long before
REPO = Path(__file__).resolve().parents[2]


def blocking_backend(ac: AnalyticalContext) -> DataAPIBackend:
    """Announce this process, then hang where the backend would open."""
    pid_file = Path(os.environ[PID_FILE_ENV])
    partial = pid_file.with_suffix(".partial")
    partial.write_text(str(os.getpid()))
    partial.replace(pid_file)  # the test never reads a half-written pid
    time.sleep(BLOCK_SECONDS)
    msg = f"the blocking backend of {ac.name} was not killed within {BLOCK_SECONDS:.0f}s"
    raise TimeoutError(msg)


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the location (lazily: importing the module builds nothing)."""
    settings = Settings()
    return build_definitions(
        load_acs(REPO / "data" / "acs", settings), settings, today=TODAY, open_backend=blocking_backend
    )
