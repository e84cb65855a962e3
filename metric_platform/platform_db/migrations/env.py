"""Alembic environment of the platform database: runs on a connection handed in by ``migrate``.

The version table is ``platform_alembic_version``, so the engine manifest (``engine_alembic_version``)
may share the database. The monthly partitions of ``ledger_run_events`` are made at run time, not
by revisions (``ledger/partitions.py``), so autogenerate ignores them.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from metric_platform.ledger.partitions import is_partition_table
from metric_platform.ledger.schema import metadata

VERSION_TABLE = "platform_alembic_version"


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    return not (type_ == "table" and name is not None and is_partition_table(name))


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        msg = (
            "the platform database migrations run only on a connection passed in "
            "config.attributes['connection']; call metric_platform.platform_db.migrate(engine)"
        )
        raise RuntimeError(msg)
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
    )
    # migrate() already opened the transaction (and took the lock); this nests as a no-op.
    with context.begin_transaction():
        context.run_migrations()


_run()
# For authoring revisions only:
#   alembic -c metric_platform/platform_db/migrations/alembic.ini revision -m "what changed"
# Databases are migrated by metric_platform.platform_db.migrate(engine), never by this file.
