"""Bring one component's tables in a platform database to the schema this code expects.

Every component with tables of its own (the engine manifest, the platform database's ledger and
read-model) keeps an Alembic script directory and a version table of its own, so several can share
one database. :class:`Migrations` runs any of them with the same safety:

- Several processes (Dagster steps, a backfill's runs) may open a fresh database at the same
  moment, so an upgrade runs inside ONE write transaction holding a lock: ``BEGIN IMMEDIATE`` on
  SQLite, a transaction-scoped advisory lock (``pg_advisory_xact_lock``) on PostgreSQL. Whoever gets
  the lock second finds the schema at head and does nothing; DDL is transactional on both dialects,
  so a crash mid-upgrade leaves the previous revision.
- :meth:`Migrations.migrate` first reads the current revision and takes no write lock at all when
  it is already at head: the common case on every store open.

The script directory's ``env.py`` must run on the connection handed over in
``config.attributes["connection"]`` (see ``platform_db/migrations/env.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Engine

from metric_platform.db import describe_url, read_transaction, write_transaction
from metric_platform.errors import StorageError


@dataclass(frozen=True)
class Migrations:
    """One component's migrations.

    ``script_dir`` is the Alembic script directory (with ``env.py`` and ``versions/``);
    ``version_table`` the component's own version table; ``pg_lock_key`` a fixed 64-bit number
    unique to the component (the advisory lock serialising its upgrades on PostgreSQL); ``label``
    names the component in error messages ("engine manifest", "platform database").
    """

    script_dir: Path
    version_table: str
    pg_lock_key: int
    label: str

    def migrate(self, engine: Engine) -> None:
        """Upgrade to the newest revision; no write lock is taken when already there."""
        if self.is_at_head(engine):
            return
        self._run(engine, "upgrade", "head")

    def upgrade(self, engine: Engine, revision: str) -> None:
        """Upgrade to ``revision`` (not necessarily the newest). For tests and operators."""
        self._run(engine, "upgrade", revision)

    def downgrade(self, engine: Engine, revision: str = "base") -> None:
        """Downgrade to ``revision`` (``"base"`` drops every table of the component)."""
        self._run(engine, "downgrade", revision)

    def head_revision(self) -> str:
        """The newest revision this code knows (read once per process: the scripts ship with the
        code, and reading them took a millisecond on every store open)."""
        head = _head_of(str(self.script_dir))
        if head is None:
            msg = f"the {self.label} migrations folder {self.script_dir} has no revisions"
            raise StorageError(msg)
        return head

    def current_revision(self, engine: Engine) -> str | None:
        """The revision the database is at, or None when the component's tables were never created."""
        with read_transaction(engine) as conn:
            context = MigrationContext.configure(conn, opts={"version_table": self.version_table})
            heads = context.get_current_heads()
        return heads[0] if heads else None

    def is_at_head(self, engine: Engine) -> bool:
        return self.current_revision(engine) == self.head_revision()

    def _config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.script_dir))
        return config

    def _run(self, engine: Engine, direction: Literal["upgrade", "downgrade"], revision: str) -> None:
        config = self._config()
        with write_transaction(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.pg_lock_key})
            config.attributes["connection"] = conn
            try:
                if direction == "upgrade":
                    command.upgrade(config, revision)
                else:
                    command.downgrade(config, revision)
            except CommandError as exc:
                msg = (
                    f"cannot {direction} the {self.label} at {describe_url(engine)} to {revision!r}: "
                    f"{exc}. If the database was migrated by a newer metric_platform, upgrade this "
                    "installation."
                )
                raise StorageError(msg) from exc


@functools.cache
def _head_of(script_dir: str) -> str | None:
    config = Config()
    config.set_main_option("script_location", script_dir)
    return ScriptDirectory.from_config(config).get_current_head()
