"""The ledger's tables in the platform database (seed 004 §1, §4), as SQLAlchemy Core.

Why the seed's DDL is not used as written
-----------------------------------------
Seed 004 declares ``eventId`` and ``(runId, runSeq)`` both as primary keys and range-partitions
the table by ``persistedAt``; on a partitioned PostgreSQL table every unique constraint must
contain the partition key, so ``UNIQUE (runId, idempotencyKey)`` cannot be created there either.

Here the partition key is ``run_epoch``: the (UTC, first-of-month) day the run was first seen,
fixed once per run in ``ledger_runs`` and copied to each of its events. A composite foreign key
``(run_id, run_epoch) → ledger_runs(run_id, run_epoch)`` makes ``run_epoch`` a function of
``run_id``, so the enforced constraints

- ``PRIMARY KEY (run_epoch, run_id, run_seq)``        ≡ ``UNIQUE (run_id, run_seq)``
- ``UNIQUE (run_epoch, run_id, idempotency_key)``     ≡ ``UNIQUE (run_id, idempotency_key)``

are exactly the seed's two guarantees, on SQLite (one table) and on PostgreSQL (monthly range
partitions plus a default partition). A whole run lives in one partition, so retention (our stand
in for Temporal's continue-as-new, seed §6) drops or deletes whole runs, never half of one.
``event_id`` is derived from the idempotency key (see ``events.NewEvent.event_id``), so it is as
unique as the key itself.

``position`` is a global, cross-run discovery order for the projector; ``tx_id`` the PostgreSQL
transaction id that wrote the row (``pg_current_xact_id()``; 0 on SQLite, whose writers are
serialised and commit in position order). See ``projector.py`` for why both are needed.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid).
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)

# Allocated by the appender (one per event, across runs); a sequence on PostgreSQL.
position_sequence = sa.Sequence("ledger_event_position_seq", metadata=metadata)

runs = sa.Table(
    "ledger_runs",
    metadata,
    sa.Column("run_id", sa.String(255), primary_key=True),
    sa.Column("run_epoch", sa.Date, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),  # the gapless runSeq allocator
    sa.Column("created_at", _TS, nullable=False),
    sa.UniqueConstraint("run_id", "run_epoch", name="uq_ledger_runs_run_epoch"),
)

run_events = sa.Table(
    "ledger_run_events",
    metadata,
    sa.Column("run_epoch", sa.Date, nullable=False),
    sa.Column("run_id", sa.String(255), nullable=False),
    sa.Column("run_seq", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.Uuid, nullable=False),
    sa.Column("step_id", sa.String(255), nullable=False),
    sa.Column("engine_attempt_id", sa.String(255), nullable=False),
    sa.Column("logical_attempt_id", sa.String(255), nullable=False),
    # Not in the seed's DDL, but part of the idempotency key: without it a stored event's key
    # could not be recomputed, and an audit could not tell which plan (fingerprint) ran.
    sa.Column("plan_version", sa.String(255), nullable=False, server_default=""),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("event_data", _JSON, nullable=False),
    sa.Column("idempotency_key", sa.CHAR(64), nullable=False),
    # SHA-256 of the semantic payload text (``NewEvent.payload_text``) as appended: what a
    # duplicate is compared by. ``event_data`` read back cannot serve: JSONB normalises numbers
    # (1e16 comes back as 10000000000000000, -0.0 as 0.0), so its canonical text may differ.
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
    sa.Index("ix_ledger_run_events_position", "position"),
    sa.Index("ix_ledger_run_events_tx_position", "tx_id", "position"),
    sa.Index("ix_ledger_run_events_type_persisted", "event_type", "persisted_at"),
    postgresql_partition_by="RANGE (run_epoch)",
)

# Seed 004 §1.3: "logicalAttemptId ... assigned by Engine (monotonic per stepId per runId)". The
# engine here is Dagster, whose run storage cannot be the allocator (a run deleted from it would
# renumber the later ones), so the ledger allocates: one row per engine run (a Dagster run id) of
# a ledger run, numbered when first seen, never renumbered. The root run is attempt 1.
run_attempts = sa.Table(
    "ledger_run_attempts",
    metadata,
    sa.Column("run_id", sa.String(255), nullable=False),
    sa.Column("engine_run_ref", sa.String(255), nullable=False),
    sa.Column("logical_attempt_id", sa.Integer, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.PrimaryKeyConstraint("run_id", "engine_run_ref", name="pk_ledger_run_attempts"),
    sa.UniqueConstraint("run_id", "logical_attempt_id", name="uq_ledger_run_attempts_number"),
)

# The projector's output (seed 004 §1.4): one current snapshot per run, replaced, never edited in
# place by anyone else. ``halted_at_seq`` is the runSeq a gap is waiting for (None: not halted).
run_snapshots = sa.Table(
    "ledger_run_snapshots",
    metadata,
    sa.Column("run_id", sa.String(255), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_event_seq", sa.BigInteger, nullable=False),
    sa.Column("events_applied", sa.BigInteger, nullable=False),
    sa.Column("halted_at_seq", sa.BigInteger, nullable=True),
    sa.Column("snapshot", _JSON, nullable=False),
    sa.Column("projected_at", _TS, nullable=False),
)

# The projector's watermark: the last (tx_id, position) it consumed, committed in the same
# transaction as the snapshots it wrote.
projector_state = sa.Table(
    "ledger_projector_state",
    metadata,
    sa.Column("projector", sa.String(64), primary_key=True),
    sa.Column("watermark_tx", sa.BigInteger, nullable=False),
    sa.Column("watermark_position", sa.BigInteger, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)

# Seed 004 §4: messages for the secondary bus, written in the same transaction as the state they
# describe; ``message_key`` is deterministic, so a re-execution enqueues nothing new and a
# consumer deduplicates deliveries by it.
outbox = sa.Table(
    "ledger_outbox",
    metadata,
    sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("message_key", sa.String(128), nullable=False, unique=True),
    sa.Column("topic", sa.String(128), nullable=False),
    sa.Column("payload", _JSON, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | dead
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", _TS, nullable=False),
    sa.Column("delivered_at", _TS, nullable=True),
    sa.Column("dead_lettered_at", _TS, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_ledger_outbox_due", "status", "next_attempt_at"),
)
