"""The manifest tables (seed 003 §6, extended for several ACs per database and retired files).

The tables are created only by the Alembic migration in ``migrations/``; this module describes
them for queries. ``metric_platform_tests/engine/store/test_migrations.py`` checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every dialect.

    SQLite has no timezone type: values are stored as naive UTC text (which sorts correctly) and
    come back tagged as UTC. Naive datetimes are refused so local time never slips in.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            msg = f"manifest timestamps must be timezone-aware datetimes, got {value!r}"
            raise ValueError(msg)
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

KEY_COLUMNS = ("ac_name", "domain", "dataset_id", "anchor_signature", "slice_key")

engine_entries = sa.Table(
    "engine_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ac_name", sa.String(255), nullable=False),
    sa.Column("domain", sa.String(16), nullable=False),
    sa.Column("dataset_id", sa.String(255), nullable=False),
    sa.Column("anchor_signature", sa.Text, nullable=False),
    sa.Column("slice_key", sa.String(10), nullable=False, server_default=""),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("parquet_path", sa.Text, nullable=False),
    sa.Column("operator", sa.String(64)),
    sa.Column("partition_invariant", sa.Boolean),
    sa.Column("mvt", sa.String(32)),
    sa.Column("imputation_value", sa.Text),
    sa.Column("family_fingerprint", sa.String(128), nullable=False),
    sa.Column("source_schemas", sa.Text, nullable=False),
    sa.Column("source_filter", sa.Text),
    sa.Column("source_fingerprint", sa.String(128)),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("byte_size", sa.BigInteger, nullable=False),
    sa.Column("materialized_at", UTCDateTime, nullable=False),
    sa.Column("stability_cutoff", sa.Date),
    sa.Column("last_access_at", UTCDateTime, nullable=False),
    sa.Column("access_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("verification_level", sa.String(16)),
    sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
    # Revision 0002: slices written together share one file. slice_column names the file's Date
    # column to filter on; file_slice_count is how many slices the file was written with, so a
    # reader asking for all of them can skip the filter. Both NULL for a one-key file.
    sa.Column("slice_column", sa.String(255)),
    sa.Column("file_slice_count", sa.Integer),
    # Revision 0003: a slice's time bucket is [slice_key, slice_end] (NULL for a whole entry), and
    # it is provisional when slice_end is after the stability cutoff it was computed under. The
    # index serves "which provisional slices have ended by the current cutoff" (stale ones).
    sa.Column("slice_end", sa.Date),
    sa.Column("provisional", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint(*KEY_COLUMNS, name="uq_engine_entries_key"),
    sa.Index("ix_engine_entries_dataset", "ac_name", "domain", "dataset_id"),
    sa.Index("ix_engine_entries_access", "ac_name", "last_access_at"),
    # "Does any row still reference this file?" is asked on every replacement (revision 0002).
    sa.Index("ix_engine_entries_path", "parquet_path"),
    sa.Index("ix_engine_entries_provisional", "ac_name", "provisional", "slice_end"),
)

# Files retired by a replacement or deletion; deleted after the grace period so that a LazyFrame
# planned before still collects. ac_name lets one AC sweep its own files in a shared database.
engine_pending_deletions = sa.Table(
    "engine_pending_deletions",
    metadata,
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("ac_name", sa.String(255), nullable=False),
    sa.Column("delete_after", UTCDateTime, nullable=False),
    sa.Index("ix_engine_pending_deletions_due", "ac_name", "delete_after"),
)

engine_meta = sa.Table(
    "engine_meta",
    metadata,
    sa.Column("ac_name", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Revision 0003: requests per grain (base key) and UTC day, for promotion recommendations and the
# eviction score. One row per grain and day keeps the table small however many serves there are.
engine_requests = sa.Table(
    "engine_requests",
    metadata,
    sa.Column("ac_name", sa.String(255), primary_key=True),
    sa.Column("domain", sa.String(16), primary_key=True),
    sa.Column("dataset_id", sa.String(255), primary_key=True),
    sa.Column("anchor_signature", sa.Text, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("hits", sa.BigInteger, nullable=False),
)
