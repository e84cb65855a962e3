"""Alembic environment of the engine store: runs on a connection handed in by ``migrate``.

The engine's version table is ``engine_alembic_version`` so that the ledger and read-model can
keep their own migrations in the same database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from metric_platform.engine.store.schema import metadata

VERSION_TABLE = "engine_alembic_version"


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        msg = (
            "the engine store migrations run only on a connection passed in "
            "config.attributes['connection']; call metric_platform.engine.store.migrate(engine)"
        )
        raise RuntimeError(msg)
    context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
    # migrate() already opened the transaction (and took the lock); this nests as a no-op.
    with context.begin_transaction():
        context.run_migrations()


_run()
