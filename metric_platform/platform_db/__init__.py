"""The platform database: one SQLAlchemy URL holding the ledger, its outbox, the read-model and the
alert tables, so that a result and the events announcing it commit in one transaction
(ARCHITECTURE.md §6). Its tables are migrated by Alembic (``migrations/``, version table
``platform_alembic_version``)."""

from __future__ import annotations

from metric_platform.platform_db.database import (
    MAINTENANCE_PARTITION_LOCK_TIMEOUT_MS,
    MIGRATIONS,
    OPEN_PARTITION_LOCK_TIMEOUT_MS,
    PARTITION_MONTHS_AHEAD,
    VERSION_TABLE,
    maintain_partitions,
    migrate,
    open_platform_db,
)

__all__ = [
    "MAINTENANCE_PARTITION_LOCK_TIMEOUT_MS",
    "MIGRATIONS",
    "OPEN_PARTITION_LOCK_TIMEOUT_MS",
    "PARTITION_MONTHS_AHEAD",
    "VERSION_TABLE",
    "maintain_partitions",
    "migrate",
    "open_platform_db",
]
