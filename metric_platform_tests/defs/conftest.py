"""Fixtures of the Dagster-level tests: a throwaway Dagster instance, and the ledger store (a SQLite
file) that allocates the logical attempts of the asset bodies in ``dagster_jobs``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from metric_platform.ledger.store import RunEventStore
from metric_platform.platform_db import open_platform_db
from metric_platform_tests.defs import dagster_jobs as jobs
from metric_platform_tests.defs.metric_defs import dagster_instance


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    jobs.reset()
    with dagster_instance() as instance:  # instance_for_test, on tmpfs when there is one
        yield instance
    jobs.reset()


@pytest.fixture
def platform_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'platform.sqlite'}"
    open_platform_db(url).dispose()
    return url


@pytest.fixture
def ledger(platform_url: str, instance: dg.DagsterInstance) -> Iterator[RunEventStore]:
    """The ledger store, also the allocator of the asset bodies' logical attempts."""
    with RunEventStore.open(platform_url) as store:
        jobs.attempts.store = store
        yield store
        jobs.attempts.store = None
