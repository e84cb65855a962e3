"""Session-wide fixtures: Hypothesis profiles and a throwaway PostgreSQL database.

PostgreSQL tests read ``METRIC_PLATFORM_TEST_PG_URL`` (a server URL; any database on it that we
may connect to). Each test session creates its own database and drops it afterwards, so parallel
runs and other tables on the server never collide. Without the URL the tests skip with a reason,
unless ``METRIC_PLATFORM_REQUIRE_PG=1`` (set by ``.ci/run``), where a skip becomes a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# Bounded for CI: enough examples to find the usual counterexamples, quick on 2 cores.
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

PG_URL_ENV = "METRIC_PLATFORM_TEST_PG_URL"
REQUIRE_PG_ENV = "METRIC_PLATFORM_REQUIRE_PG"


def _sqlalchemy_pg_url(url: str, database: str) -> str:
    """Point ``url`` at ``database`` and make SQLAlchemy use psycopg 3."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql+psycopg", database=database)
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        reason = f"{PG_URL_ENV} is not set: PostgreSQL tests skipped"
        if os.environ.get(REQUIRE_PG_ENV) == "1":
            pytest.fail(f"{reason}, but {REQUIRE_PG_ENV}=1 requires them")
        pytest.skip(reason)
    return url


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A SQLAlchemy URL (psycopg 3) of a database created for this test session, dropped after."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(pg_server_url).set(drivername="postgresql")
    conninfo = admin.render_as_string(hide_password=False)
    name = f"mp_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if os.environ.get(REQUIRE_PG_ENV) == "1":
            pytest.fail(f"PostgreSQL at {PG_URL_ENV} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL_ENV} is unreachable: {exc}")
    try:
        yield _sqlalchemy_pg_url(pg_server_url, name)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def no_backstop(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every time a dry run reached the write backstop (``write_guard.check``): a store must ask
    ``permit`` and skip, never get there. Recorded (the real backstop still raises, which a store
    could swallow) and asserted empty at the end."""
    from metric_platform import write_guard

    reached: list[str] = []
    original = write_guard.check

    def check(what: str) -> None:
        if write_guard.is_dry_run():
            reached.append(what)
        original(what)

    monkeypatch.setattr(write_guard, "check", check)
    yield reached
    assert reached == [], "a dry run reached the write backstop"
