"""The engine's store: Parquet entry files plus a manifest in a platform database (seed 003 §3.4, §6)."""

from __future__ import annotations

from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.engine.store.migrations_runner import migrate
from metric_platform.engine.store.records import (
    ByteTotals,
    Entry,
    EntryMeta,
    EvictionResult,
    EvictionUnit,
    GrainRequests,
    GrainSummary,
    SweepReport,
)
from metric_platform.engine.store.unreadable import UnreadableEntryError

__all__ = [
    "ByteTotals",
    "Domain",
    "Entry",
    "EntryKey",
    "EntryMeta",
    "EntryStore",
    "EvictionResult",
    "EvictionUnit",
    "GrainRequests",
    "GrainSummary",
    "SweepReport",
    "UnreadableEntryError",
    "migrate",
]
