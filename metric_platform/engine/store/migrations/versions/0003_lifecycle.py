"""Engine lifecycle: each slice's bucket end and provisional flag, and per-day request counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-02-14

Existing slice rows are backfilled: ``slice_end`` is set to the slice's day (its ``slice_key``)
and ``provisional`` to ``stability_cutoff IS NOT NULL AND slice_end > stability_cutoff``. Rows
written before 0003 do not record how long their bucket was, so the end of a coarse bucket (a
week or month slice keyed by its first day) is approximated by its start: such a row counts as
provisional only if its first day was inside the hold-off window, and a coarse bucket that was
still open when computed may be treated as stable. Republishing it (a refresh, or eviction and
recomputation) records the real end. Whole entries keep ``slice_end`` NULL and are never provisional.

Downgrading drops the columns, the index and ``engine_requests`` (request counts are only
statistics; nothing else depends on them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

# The columns the backfill reads and writes, described here rather than imported from schema.py:
# a migration must keep meaning what it meant when it was written.
_entries = sa.table(
    "engine_entries",
    sa.column("slice_key", sa.String),
    sa.column("stability_cutoff", sa.Date),
    sa.column("slice_end", sa.Date),
    sa.column("provisional", sa.Boolean),
)


def upgrade() -> None:
    op.add_column("engine_entries", sa.Column("slice_end", sa.Date))
    op.add_column(
        "engine_entries",
        sa.Column("provisional", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    _backfill()
    op.create_index(
        "ix_engine_entries_provisional", "engine_entries", ["ac_name", "provisional", "slice_end"]
    )
    op.create_table(
        "engine_requests",
        sa.Column("ac_name", sa.String(255), primary_key=True),
        sa.Column("domain", sa.String(16), primary_key=True),
        sa.Column("dataset_id", sa.String(255), primary_key=True),
        sa.Column("anchor_signature", sa.Text, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("hits", sa.BigInteger, nullable=False),
    )


def _backfill() -> None:
    c = _entries.c
    is_slice = c.slice_key != ""
    # SQLite stores a Date as ISO text, which a slice key already is (and CAST(... AS DATE) there
    # would yield a number); PostgreSQL needs the cast.
    end = sa.cast(c.slice_key, sa.Date) if op.get_bind().dialect.name == "postgresql" else c.slice_key
    op.execute(sa.update(_entries).where(is_slice).values(slice_end=end))
    after_cutoff = sa.and_(
        c.slice_end.is_not(None), c.stability_cutoff.is_not(None), c.slice_end > c.stability_cutoff
    )
    op.execute(sa.update(_entries).where(after_cutoff).values(provisional=sa.true()))


def downgrade() -> None:
    op.drop_table("engine_requests")
    op.drop_index("ix_engine_entries_provisional", table_name="engine_entries")
    op.drop_column("engine_entries", "provisional")
    op.drop_column("engine_entries", "slice_end")
