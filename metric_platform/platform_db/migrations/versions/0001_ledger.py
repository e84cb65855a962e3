"""Ledger: runs, run events (range-partitioned by run_epoch on PostgreSQL), logical attempts,
snapshots, projector state, outbox; the position sequence on PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2026-02-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Written out, not imported from ledger/schema.py: a revision is a frozen record of the schema it
# made (metric_platform_tests/ledger/test_platform_migrations.py checks the two agree at head).
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(sa.schema.CreateSequence(sa.Sequence("ledger_event_position_seq")))
    op.create_table(
        "ledger_runs",
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("run_epoch", sa.Date, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("run_id", "run_epoch", name="uq_ledger_runs_run_epoch"),
    )
    op.create_table(
        "ledger_run_events",
        sa.Column("run_epoch", sa.Date, nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("run_seq", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("step_id", sa.String(255), nullable=False),
        sa.Column("engine_attempt_id", sa.String(255), nullable=False),
        sa.Column("logical_attempt_id", sa.String(255), nullable=False),
        sa.Column("plan_version", sa.String(255), nullable=False, server_default=""),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("event_data", _JSON, nullable=False),
        sa.Column("idempotency_key", sa.CHAR(64), nullable=False),
        sa.Column("semantic_sha256", sa.CHAR(64), nullable=False),
        sa.Column("emitted_at", _TS, nullable=False),
        sa.Column("persisted_at", _TS, nullable=False),
        sa.Column("adapter_version", sa.String(40), nullable=False),
        sa.Column("engine_run_ref", _JSON, nullable=True),
        sa.Column("caused_by_signal_id", sa.Uuid, nullable=True),
        sa.Column("parent_event_id", sa.Uuid, nullable=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("tx_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_epoch", "run_id", "run_seq", name="pk_ledger_run_events"),
        sa.UniqueConstraint("run_epoch", "run_id", "idempotency_key", name="uq_ledger_run_events_key"),
        sa.ForeignKeyConstraint(
            ["run_id", "run_epoch"],
            ["ledger_runs.run_id", "ledger_runs.run_epoch"],
            name="fk_ledger_run_events_run",
        ),
        postgresql_partition_by="RANGE (run_epoch)",
    )
    if postgres:
        # Catches every month without a partition of its own, so an append never fails for want
        # of one; monthly partitions are added ahead of time by ledger/partitions.py.
        op.execute("CREATE TABLE ledger_run_events_default PARTITION OF ledger_run_events DEFAULT")
    # On a partitioned parent each index is created on every partition, present and future.
    op.create_index("ix_ledger_run_events_position", "ledger_run_events", ["position"])
    op.create_index("ix_ledger_run_events_tx_position", "ledger_run_events", ["tx_id", "position"])
    op.create_index(
        "ix_ledger_run_events_type_persisted", "ledger_run_events", ["event_type", "persisted_at"]
    )
    op.create_table(
        "ledger_run_attempts",
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("engine_run_ref", sa.String(255), nullable=False),
        sa.Column("logical_attempt_id", sa.Integer, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "engine_run_ref", name="pk_ledger_run_attempts"),
        sa.UniqueConstraint("run_id", "logical_attempt_id", name="uq_ledger_run_attempts_number"),
    )
    op.create_table(
        "ledger_run_snapshots",
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_event_seq", sa.BigInteger, nullable=False),
        sa.Column("events_applied", sa.BigInteger, nullable=False),
        sa.Column("halted_at_seq", sa.BigInteger, nullable=True),
        sa.Column("snapshot", _JSON, nullable=False),
        sa.Column("projected_at", _TS, nullable=False),
    )
    op.create_table(
        "ledger_projector_state",
        sa.Column("projector", sa.String(64), primary_key=True),
        sa.Column("watermark_tx", sa.BigInteger, nullable=False),
        sa.Column("watermark_position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "ledger_outbox",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("message_key", sa.String(128), nullable=False, unique=True),
        sa.Column("topic", sa.String(128), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.Column("dead_lettered_at", _TS, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_ledger_outbox_due", "ledger_outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("ledger_outbox")
    op.drop_table("ledger_projector_state")
    op.drop_table("ledger_run_snapshots")
    op.drop_table("ledger_run_attempts")
    # Dropping the partitioned parent drops every partition with it.
    op.drop_table("ledger_run_events")
    op.drop_table("ledger_runs")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.schema.DropSequence(sa.Sequence("ledger_event_position_seq")))
