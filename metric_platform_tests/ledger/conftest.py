"""Fixtures shared by the ledger tests: a migrated, empty platform database per test on each dialect.

``platform_url`` is bound to a SQLite file under ``tmp_path`` and to PostgreSQL. On PostgreSQL
every test gets a schema of its own in the session database (``search_path`` in the URL), dropped
afterwards, so tables, partitions and the position sequence start empty and never leak between
tests. The URL works unchanged in spawned worker processes. ``pg_platform_url`` is the PostgreSQL
one alone, for tests of what only PostgreSQL has (partitions, transaction ids).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from metric_platform.ledger.store import RunEventStore
from metric_platform.platform_db import open_platform_db
from metric_platform_tests.pg_schema import fresh_pg_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all: a SQLite file not created yet, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'platform.sqlite'}"
        return
    with fresh_pg_schema(str(request.getfixturevalue("pg_url"))) as url:
        yield url


@pytest.fixture
def platform_url(empty_db_url: str) -> str:
    """A platform database migrated to head (with this month's partitions on PostgreSQL), empty."""
    open_platform_db(empty_db_url).dispose()
    return empty_db_url


@pytest.fixture
def pg_empty_url(pg_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema (mark the test ``postgres``)."""
    with fresh_pg_schema(pg_url) as url:
        yield url


@pytest.fixture
def pg_platform_url(pg_empty_url: str) -> str:
    """A migrated, empty platform database on PostgreSQL (mark the test ``postgres``)."""
    open_platform_db(pg_empty_url).dispose()
    return pg_empty_url


@pytest.fixture
def ledger_store(platform_url: str) -> Iterator[RunEventStore]:
    """A :class:`RunEventStore` on ``platform_url``; its engine is disposed afterwards."""
    with RunEventStore.open(platform_url) as store:
        yield store
