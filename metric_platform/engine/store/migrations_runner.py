"""Bring a manifest database to the schema this code expects, safely from several processes.

A thin binding of the generic runner (:mod:`metric_platform.migrations`) to the engine store's
script directory: one write transaction holding a lock (``BEGIN IMMEDIATE`` on SQLite, a
transaction-scoped advisory lock on PostgreSQL), and no lock at all when already at head.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from metric_platform.migrations import Migrations

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "engine_alembic_version"
# Any fixed 64-bit number unique to this component's migrations (other components pick others).
_PG_LOCK_KEY = 0x6D705F656E67696E  # "mp_engin"

MIGRATIONS = Migrations(MIGRATIONS_DIR, VERSION_TABLE, _PG_LOCK_KEY, "engine manifest")


def migrate(engine: Engine) -> None:
    """Upgrade the engine tables in ``engine``'s database to the newest revision."""
    MIGRATIONS.migrate(engine)


def upgrade(engine: Engine, revision: str) -> None:
    """Upgrade the engine tables to ``revision`` (not necessarily the newest). For tests and operators."""
    MIGRATIONS.upgrade(engine, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Downgrade the engine tables (``"base"`` drops them all). For tests and operators."""
    MIGRATIONS.downgrade(engine, revision)


def head_revision() -> str:
    """The newest revision this code knows."""
    return MIGRATIONS.head_revision()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when the engine tables were never created."""
    return MIGRATIONS.current_revision(engine)
