"""The values the store takes and returns: writer-supplied metadata, stored entries, reports.

Also the lifecycle's views of the manifest: byte totals and eviction units (``evict``), and
request counts per grain (``request_counts``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from metric_platform.engine.store.keys import Domain, EntryKey
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

    A slice covers the time bucket [``key.slice_day``, ``slice_end``] (None for a whole entry). It
    is ``provisional`` when ``slice_end`` is after the ``meta.stability_cutoff`` it was computed
    under, i.e. the bucket still had days inside the hold-off window; it becomes stale once the
    current cutoff reaches ``slice_end`` (``EntryStore.list_provisional(ended_by=cutoff)``).
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
    slice_end: date | None = None
    provisional: bool = False

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


@dataclass(frozen=True)
class ByteTotals:
    """The manifest bytes of one AC: ``evictable`` (unpinned rows) and ``pinned``, never evicted."""

    evictable: int
    pinned: int


@dataclass(frozen=True)
class EvictionUnit:
    """All UNPINNED rows of one (domain, dataset_id, anchor) that share one file: what eviction removes.

    Evicting the unit deletes those rows and frees the file, unless pinned rows of the same file
    remain. ``path`` is relative to the data dir; ``rows`` holds (entry id, version) of each row,
    by slice day, so that a row replaced after the unit was read is left alone. ``byte_size`` and
    ``row_count`` sum the rows; ``last_access_at`` is the latest access of any of them and
    ``access_count`` the highest (a serve reading several slices of the file counts each once, so
    the highest count is how often the file was read, where a sum would grow with its slices).
    ``first_day``/``last_day`` are the first and last slice days, None for a whole entry.
    """

    domain: Domain
    dataset_id: str
    anchor: tuple[str, ...]
    path: str
    rows: tuple[tuple[int, int], ...]
    byte_size: int
    row_count: int
    last_access_at: datetime
    access_count: int
    first_day: date | None
    last_day: date | None

    @property
    def slices(self) -> int:
        """How many manifest rows (slices, or 1 for a whole entry) evicting the unit deletes."""
        return len(self.rows)


@dataclass(frozen=True)
class EvictionResult:
    """What one eviction did (or, for a dry run, would do).

    ``bytes_freed`` sums the manifest ``byte_size`` of the deleted rows, the measure of the budget;
    ``files_retired`` counts files no row references any more (deleted after the grace period);
    ``rows_skipped`` counts chosen rows left alone because they were replaced, pinned or deleted
    after the units were read.
    """

    rows_deleted: int
    bytes_freed: int
    files_retired: int
    rows_skipped: int


@dataclass(frozen=True)
class GrainRequests:
    """Requests for one grain (domain, dataset, anchor) since a day, from ``EntryStore.request_counts``.

    ``active_days`` counts the UTC days with at least one request; ``first_day``/``last_day`` are
    the first and last of them.
    """

    domain: Domain
    dataset_id: str
    anchor: tuple[str, ...]
    hits: int
    active_days: int
    first_day: date
    last_day: date
