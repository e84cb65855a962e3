"""Slices that share one file: the slice column to filter on, the file's slice count, a path index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-07

Downgrading forgets the slices that share a file (``file_slice_count > 1``): code at 0001 retires
a row's file when the row is replaced, which would delete a file other slices still read. The rows
are a cache, so they are recomputed; their files become orphans that the sweep removes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("engine_entries", sa.Column("slice_column", sa.String(255)))
    op.add_column("engine_entries", sa.Column("file_slice_count", sa.Integer))
    op.create_index("ix_engine_entries_path", "engine_entries", ["parquet_path"])


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM engine_entries WHERE file_slice_count > 1"))
    op.drop_index("ix_engine_entries_path", table_name="engine_entries")
    op.drop_column("engine_entries", "file_slice_count")
    op.drop_column("engine_entries", "slice_column")
