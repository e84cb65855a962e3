"""Bring a manifest database to the schema this code expects, safely from several processes.

Several Dagster step processes may open a fresh store at the same moment, so the upgrade runs
inside one write transaction holding a lock: ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped
advisory lock on PostgreSQL. Whoever gets it second finds the schema at head and does nothing.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Engine

from metric_platform.db import describe_url, read_transaction, write_transaction
from metric_platform.errors import StorageError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "engine_alembic_version"
# Any fixed 64-bit number unique to this component's migrations (other components pick others).
_PG_LOCK_KEY = 0x6D705F656E67696E  # "mp_engin"


def migrate(engine: Engine) -> None:
    """Upgrade the engine tables in ``engine``'s database to the newest revision."""
    if current_revision(engine) == head_revision():
        return  # the common case: no write lock taken on every store open
    _run(engine, "upgrade", "head")


def upgrade(engine: Engine, revision: str) -> None:
    """Upgrade the engine tables to ``revision`` (not necessarily the newest). For tests and operators."""
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Downgrade the engine tables (``"base"`` drops them all). For tests and operators."""
    _run(engine, "downgrade", revision)


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the engine store migrations folder has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when the engine tables were never created."""
    with read_transaction(engine) as conn:
        heads = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_heads()
    return heads[0] if heads else None


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _run(engine: Engine, direction: str, revision: str) -> None:
    config = _config()
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        config.attributes["connection"] = conn
        try:
            if direction == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
        except CommandError as exc:
            msg = (
                f"cannot {direction} the engine manifest at {describe_url(engine)} to {revision!r}: {exc}. "
                "If the database was migrated by a newer metric_platform, upgrade this installation."
            )
            raise StorageError(msg) from exc
