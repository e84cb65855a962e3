"""Fixtures shared by the ledger tests: a migrated, empty platform database per test on each dialect.

``platform_url`` is bound to a SQLite file under ``tmp_path`` and to PostgreSQL. On PostgreSQL
every test gets a schema of its own in the session database (``search_path`` in the URL), dropped
afterwards, so tables, partitions and the position sequence start empty and never leak between
tests. The URL works unchanged in spawned worker processes. ``pg_platform_url`` is the PostgreSQL
one alone, for tests of what only PostgreSQL has (partitions, transaction ids).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from metric_platform.db import create_db_engine, write_transaction
from metric_platform.ledger.store import RunEventStore
from metric_platform.platform_db import open_platform_db


@contextmanager
def fresh_pg_schema(pg_url: str) -> Iterator[str]:
    """The URL of a new, empty schema in the session database; the schema is dropped afterwards."""
    schema = f"ledger_{uuid.uuid4().hex[:10]}"
    admin = create_db_engine(pg_url)
    with write_transaction(admin) as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        url = sa.engine.make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with write_transaction(admin) as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


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
