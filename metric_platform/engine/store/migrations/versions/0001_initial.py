"""Engine manifest: entries, pending file deletions, per-AC engine metadata.

Revision ID: 0001
Revises:
Create Date: 2026-01-31
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "engine_entries",
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
        sa.Column("materialized_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stability_cutoff", sa.Date),
        sa.Column("last_access_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("access_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("verification_level", sa.String(16)),
        sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint(
            "ac_name", "domain", "dataset_id", "anchor_signature", "slice_key", name="uq_engine_entries_key"
        ),
    )
    op.create_index("ix_engine_entries_dataset", "engine_entries", ["ac_name", "domain", "dataset_id"])
    op.create_index("ix_engine_entries_access", "engine_entries", ["ac_name", "last_access_at"])
    op.create_table(
        "engine_pending_deletions",
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("ac_name", sa.String(255), nullable=False),
        sa.Column("delete_after", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_engine_pending_deletions_due", "engine_pending_deletions", ["ac_name", "delete_after"]
    )
    op.create_table(
        "engine_meta",
        sa.Column("ac_name", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("engine_meta")
    op.drop_index("ix_engine_pending_deletions_due", table_name="engine_pending_deletions")
    op.drop_table("engine_pending_deletions")
    op.drop_index("ix_engine_entries_access", table_name="engine_entries")
    op.drop_index("ix_engine_entries_dataset", table_name="engine_entries")
    op.drop_table("engine_entries")
