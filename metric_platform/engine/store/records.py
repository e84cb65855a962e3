"""The values the store takes and returns: writer-supplied metadata, stored entries, sweep reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from metric_platform.engine.store.keys import EntryKey
from metric_platform.errors import InvalidRequestError


@dataclass(frozen=True)
class EntryMeta:
    """Provenance the writer records with an entry (seed 003 §6; METRIC-only fields are None for QM).

    ``imputation_value`` and ``source_filter`` are JSON texts. ``family_fingerprint`` is the metric
    family's definition fingerprint, or for QM the profiled schema's. ``pinned`` entries are never
    evicted; a replacement keeps an existing pin (unpin with ``EntryStore.set_pinned``).
    """

    operator: str | None
    partition_invariant: bool | None
    mvt: str | None
    imputation_value: str | None
    family_fingerprint: str
    source_schemas: tuple[str, ...]
    source_filter: str | None
    stability_cutoff: date | None
    verification_level: str | None
    source_fingerprint: str | None
    pinned: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.source_schemas, tuple) or not all(
            isinstance(name, str) for name in self.source_schemas
        ):
            msg = f"source_schemas must be a tuple of schema names, got {self.source_schemas!r}"
            raise InvalidRequestError(msg)
        if isinstance(self.stability_cutoff, datetime):
            msg = "stability_cutoff is a day; pass a datetime.date, not a datetime"
            raise InvalidRequestError(msg)
        for field_name in ("imputation_value", "source_filter"):
            text = getattr(self, field_name)
            if text is None:
                continue
            try:
                json.loads(text)
            except (TypeError, ValueError) as exc:
                msg = f"{field_name} must be JSON text (e.g. json.dumps(value)), got {text!r}: {exc}"
                raise InvalidRequestError(msg) from exc


@dataclass(frozen=True)
class Entry:
    """A materialized entry as the manifest records it; ``path`` is absolute and immutable.

    A replacement gets a new file and a higher ``version``; the old file stays readable for the
    store's grace period, so a LazyFrame planned from an older Entry still collects.

    Slices published together (``EntryStore.publish_slices``) share ``path``: ``slice_column``
    names the file's Date column that tells the slices apart, ``file_slice_count`` how many slices
    the file was written with, and ``byte_size`` is the file's size apportioned by rows. Both are
    None for a file of its own.
    """

    key: EntryKey
    entry_id: int
    version: int
    path: Path
    row_count: int
    byte_size: int
    materialized_at: datetime
    last_access_at: datetime
    access_count: int
    meta: EntryMeta
    slice_column: str | None = None
    file_slice_count: int | None = None

    @property
    def pinned(self) -> bool:
        return self.meta.pinned


@dataclass(frozen=True)
class GrainSummary:
    """What the manifest holds for one anchor (grain) of a dataset, from ``EntryStore.list_grains``.

    ``total_rows`` counts the slices' rows; the whole entry's are ``whole_rows`` (0 without one).
    ``first_day``/``last_day`` are the first and last slice days (None without slices); the slices
    between them need not be contiguous (``list_slices`` tells which exist).
    """

    anchor: tuple[str, ...]
    slice_count: int
    first_day: date | None
    last_day: date | None
    total_rows: int
    has_whole_entry: bool
    whole_rows: int


@dataclass(frozen=True)
class SweepReport:
    """What one ``EntryStore.sweep`` removed from disk."""

    files_deleted: int
    orphans_deleted: int
    bytes_freed: int
