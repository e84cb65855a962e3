"""The engine's store: immutable Parquet entry files plus a transactional manifest (seed 003 §3.4, §6).

Safe across processes (ARCHITECTURE.md §6), not only threads: every read-then-write runs in one
write transaction, the key is unique in the database, and a publish writes its file under a fresh
name before the manifest points at it. Readers therefore see either the old file or the new one,
never a torn one, and a replaced file stays on disk for the grace period.

Files are registered as in flight before they are written (``in_flight``), so a sweep never takes a
file whose publish is still under way; the manifest transaction swaps the registrations for rows.
A file deleted or damaged behind the store's back makes ``scan``/``scan_slices`` raise
``UnreadableEntryError``; ``drop_unreadable`` then forgets the entry so that it is recomputed.

Day slices are logical: ``publish_slices`` writes the slices of a computed range to ONE file and
one manifest row per slice points at it (730 one-day files cost 25x one file to read, and 0.7 s to
fsync). A file is therefore retired only when its last referencing row is replaced or deleted.

Lifecycle (issue 4): each slice records its bucket's end and whether it was provisional
(``list_provisional`` finds the stale ones); ``record_access`` also counts requests per grain and
day (``request_counts``); ``evict`` deletes the units an eviction policy chooses, in one
transaction, retiring their files like any replacement does.

Dry runs (seed 000 §6, :mod:`metric_platform.write_guard`): every write path asks
``write_guard.permit`` first and, under a dry run, skips the write after validating its input, so
the run's record lists what a real run would have written. What each returns then says that
nothing was kept: ``publish_many``/``publish_slices`` return ``[]``, ``pin_entries`` and
``drop_unreadable`` 0, ``sweep`` an empty report, ``evict`` what it would evict (read only).
Opening a store under a dry run creates and migrates nothing (``manifest_open``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from metric_platform import write_guard
from metric_platform.db import read_transaction, write_transaction
from metric_platform.engine.store import (
    eviction,
    in_flight,
    manifest,
    reader,
    requests,
    slice_manifest,
    unreadable,
)
from metric_platform.engine.store.keys import WHOLE_ENTRY, Domain, EntryKey
from metric_platform.engine.store.layout import (
    entry_dir,
    new_file_name,
    shared_slices_file,
    write_parquet_atomically,
)
from metric_platform.engine.store.lifecycle_queries import LifecycleQueries
from metric_platform.engine.store.manifest_open import open_manifest
from metric_platform.engine.store.records import (
    ByteTotals,
    Entry,
    EntryMeta,
    EvictionResult,
    EvictionUnit,
    GrainSummary,
    SweepReport,
)
from metric_platform.engine.store.schema import KEY_COLUMNS, engine_entries, engine_meta
from metric_platform.engine.store.slices import apportion_bytes, plan_slices
from metric_platform.engine.store.sweeper import sweep
from metric_platform.errors import InvalidRequestError, StorageError, UnknownNameError

if TYPE_CHECKING:
    from metric_platform.settings import Settings


@dataclass(frozen=True)
class _Written:
    key: EntryKey
    meta: EntryMeta
    relative: str
    absolute: Path
    row_count: int
    byte_size: int


class EntryStore(LifecycleQueries):
    """Entries of every AC under one data dir, catalogued in one manifest database."""

    def __init__(
        self,
        manifest_url: str,
        data_dir: Path,
        *,
        grace_seconds: float = 900.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if grace_seconds < 0:
            msg = f"grace_seconds must be >= 0, got {grace_seconds}"
            raise InvalidRequestError(msg)
        self._data_dir = Path(data_dir).resolve()
        self._grace = timedelta(seconds=grace_seconds)
        self._clock = clock or _utc_now
        self._writes = 0
        self._writes_lock = threading.Lock()
        opened = open_manifest(manifest_url)
        self._engine = opened.engine
        # Under a dry run over a manifest that does not exist yet (or is not migrated), an
        # in-memory stand-in: empty, and never to be written outside a dry run (``_suppressed``).
        self._stand_in = opened.stand_in

    @classmethod
    def from_settings(cls, settings: Settings) -> EntryStore:
        return cls(settings.manifest_url, settings.data_dir, grace_seconds=settings.file_grace_seconds)

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def write_count(self) -> int:
        """How many publishes (``publish``, ``publish_many``, ``publish_slices``) this store object
        has committed: the writes that can grow an AC's bytes, so a caller comparing the count
        before and after an operation knows whether to check the byte budget."""
        return self._writes

    def now(self) -> datetime:
        """The store clock's current time, timezone-aware UTC (request days and stamps use it)."""
        return self._now()

    def close(self) -> None:
        """Release the manifest's connections (the store must not be used afterwards)."""
        self._engine.dispose()

    def __enter__(self) -> EntryStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: EntryKey) -> Entry | None:
        """The entry stored under ``key``, or None. Does not count as an access."""
        with read_transaction(self._engine) as conn:
            row = manifest.select_row(conn, key)
        return None if row is None else manifest.row_to_entry(row, self._data_dir)

    def list_entries(
        self, ac_name: str, *, domain: Domain | None = None, dataset_id: str | None = None
    ) -> list[Entry]:
        c = engine_entries.c
        query = sa.select(engine_entries).where(c.ac_name == ac_name)
        if domain is not None:
            query = query.where(c.domain == domain.value)
        if dataset_id is not None:
            query = query.where(c.dataset_id == dataset_id)
        query = query.order_by(c.domain, c.dataset_id, c.anchor_signature, c.slice_key)
        with read_transaction(self._engine) as conn:
            rows = conn.execute(query).all()
        return [manifest.row_to_entry(row, self._data_dir) for row in rows]

    def scan(self, entry: Entry) -> pl.LazyFrame:
        """A LazyFrame over the entry's file; it keeps collecting for the grace period after a replacement.

        For a slice sharing its file with others, this is the WHOLE file: use ``scan_slices``.
        A missing or unreadable file is an ``UnreadableEntryError`` (see ``drop_unreadable``).
        """
        return reader.open_entry(entry)

    def list_slices(
        self, base: EntryKey, *, start: date | None = None, end: date | None = None
    ) -> list[Entry]:
        """The slices of ``base`` (a key without slice) whose day is in [start, end], by day; one query."""
        _require_base(base, "list_slices")
        with read_transaction(self._engine) as conn:
            rows = slice_manifest.select_slices(conn, base, start, end)
        return [manifest.row_to_entry(row, self._data_dir) for row in rows]

    def list_grains(
        self, ac_name: str, domain: Domain, dataset_id: str
    ) -> dict[tuple[str, ...], GrainSummary]:
        """Which anchors (grains) of a dataset are stored, summarised per anchor in one GROUP BY."""
        with read_transaction(self._engine) as conn:
            return slice_manifest.grain_summaries(conn, ac_name, domain, dataset_id)

    def scan_slices(self, entries: Sequence[Entry], *, schema: pl.Schema | None = None) -> pl.LazyFrame:
        """The union of ``entries``' rows, each distinct file scanned once (see ``reader.scan_slices``).

        No entries: an empty frame of ``schema``, or InvalidRequestError without one. Missing or
        unreadable files: one ``UnreadableEntryError`` carrying all their entries.
        """
        return reader.scan_slices(entries, schema=schema)

    def total_bytes(self, ac_name: str, *, evictable_only: bool = False) -> int:
        """Bytes of the AC's current entry files (retired files awaiting deletion are not counted)."""
        query = sa.select(sa.func.coalesce(sa.func.sum(engine_entries.c.byte_size), 0)).where(
            engine_entries.c.ac_name == ac_name
        )
        if evictable_only:
            query = query.where(engine_entries.c.pinned == sa.false())
        with read_transaction(self._engine) as conn:
            return int(conn.execute(query).scalar_one())

    def get_meta(self, ac_name: str, key: str) -> str | None:
        query = sa.select(engine_meta.c.value).where(
            engine_meta.c.ac_name == ac_name, engine_meta.c.key == key
        )
        with read_transaction(self._engine) as conn:
            value = conn.execute(query).scalar_one_or_none()
        return None if value is None else str(value)

    def list_meta(self, ac_name: str, *, prefix: str = "") -> dict[str, str]:
        """The AC's engine metadata whose key starts with ``prefix`` (all without one), by key."""
        c = engine_meta.c
        query = sa.select(c.key, c.value).where(c.ac_name == ac_name)
        if prefix:
            query = query.where(c.key.startswith(prefix, autoescape=True))
        with read_transaction(self._engine) as conn:
            rows = conn.execute(query.order_by(c.key)).all()
        return {str(row.key): str(row.value) for row in rows}

    # -- writing -------------------------------------------------------------------------------

    def publish(self, key: EntryKey, frame: pl.DataFrame, meta: EntryMeta) -> Entry:
        """Store one entry (see ``publish_many``).

        Under a dry run nothing is stored and the entry returned is a preview: its ``version``
        and ``entry_id`` are 0 (stored entries start at 1) and its ``path`` does not exist.
        """
        kept = self.publish_many([(key, frame, meta)])
        return kept[0] if kept else self._preview(key, frame, meta)

    def publish_many(self, items: Sequence[tuple[EntryKey, pl.DataFrame, EntryMeta]]) -> list[Entry]:
        """Store every frame and point the manifest at all of them in ONE transaction.

        Files are registered as in flight, then written (temp name, fsync, rename), before the
        transaction; a crash in between leaves only registered files, which ``sweep`` removes once
        their registration falls due. Replaced files are retired.
        """
        if not items:
            return []
        _check_items(items)
        if self._suppressed("engine.publish", len(items)):
            return []
        now = self._now()
        planned = [
            (key, frame, meta, (entry_dir(key) / new_file_name(now)).as_posix()) for key, frame, meta in items
        ]
        relatives = [relative for _, _, _, relative in planned]
        in_flight.register(self._engine, {relative: key.ac_name for key, _, _, relative in planned}, now)
        written: list[_Written] = []
        try:
            for key, frame, meta, relative in planned:
                absolute = self._absolute(relative)
                size = write_parquet_atomically(frame, absolute)
                written.append(_Written(key, meta, relative, absolute, frame.height, size))
        except BaseException:
            # Nothing references these files yet, so removing them now is safe.
            for done in written:
                done.absolute.unlink(missing_ok=True)
            self._release(relatives)
            raise
        self._before_manifest_commit([done.absolute for done in written])
        published: dict[EntryKey, Entry] = {}
        what = f"{len(items)} entr{'y' if len(items) == 1 else 'ies'} of {items[0][0].describe()}"
        with self._manifest_transaction(relatives, what) as conn:
            manifest.lock_bases(conn, [done.key for done in written])
            replaced: dict[str, str] = {}
            # A fixed lock order, so that two publish_many calls never deadlock on PostgreSQL.
            for done in sorted(written, key=lambda w: manifest.sort_key(w.key)):
                row, old_path = manifest.upsert_entry(
                    conn,
                    done.key,
                    done.meta,
                    parquet_path=done.relative,
                    row_count=done.row_count,
                    byte_size=done.byte_size,
                    now=now,
                )
                if old_path is not None:
                    replaced[old_path] = done.key.ac_name
                published[done.key] = manifest.row_to_entry(row, self._data_dir)
            manifest.retire_unreferenced(conn, replaced, now + self._grace)
        return [published[key] for key, _, _ in items]

    def publish_slices(
        self,
        base: EntryKey,
        frame: pl.DataFrame,
        *,
        slice_column: str,
        slices: Sequence[date],
        meta: EntryMeta | Mapping[date, EntryMeta],
        ends: Mapping[date, date] | None = None,
    ) -> list[Entry]:
        """Store the slices ``slices`` of ``base`` in ONE file and one manifest row per slice.

        ``frame`` holds every row of those slices; its Date column ``slice_column`` says which
        slice a row belongs to and must be one of ``slices`` (else InvalidRequestError, nothing
        written). A slice without rows is recorded too, so the range is not recomputed. ``meta``
        is shared or given per slice (e.g. a different ``stability_cutoff``). All rows are upserted
        in one transaction; each row's ``byte_size`` is the file size apportioned by rows. The
        file holds the rows grouped by slice (stable order within a slice). Returns the entries in
        the order of ``slices``.

        A slice keyed by day ``d`` covers the bucket [d, ``ends[d]``] (default: the day alone);
        ``ends`` must give every slice an end on or after its day. A slice whose end is after its
        meta's ``stability_cutoff`` is recorded as provisional (``list_provisional``).
        """
        plan = plan_slices(base, frame, slice_column=slice_column, slices=slices, meta=meta)
        slice_ends = slice_manifest.slice_ends(base.describe(), plan.days, ends)
        if not plan.days or self._suppressed("engine.publish", len(plan.days)):
            return []
        now = self._now()
        relative = shared_slices_file(base, min(plan.days), max(plan.days), now).as_posix()
        absolute = self._absolute(relative)
        in_flight.register(self._engine, {relative: base.ac_name}, now)
        try:
            size = write_parquet_atomically(plan.frame, absolute)  # unlinks its temp file on failure
        except BaseException:
            self._release([relative])
            raise
        counts = [plan.row_counts[day] for day in plan.days]
        rows = [
            slice_manifest.SliceRow(day.isoformat(), plan.metas[day], count, share, slice_ends[day])
            for day, count, share in zip(plan.days, counts, apportion_bytes(size, counts), strict=True)
        ]
        self._before_manifest_commit([absolute])
        # As in publish_many, a failed transaction leaves the registered file for the sweep.
        with self._manifest_transaction([relative], f"the slices of {base.describe()}") as conn:
            manifest.lock_bases(conn, [base])
            stored, replaced = slice_manifest.upsert_slices(
                conn, base, rows, parquet_path=relative, slice_column=slice_column, now=now
            )
            manifest.retire_unreferenced(conn, dict.fromkeys(replaced, base.ac_name), now + self._grace)
        entries = {str(row.slice_key): manifest.row_to_entry(row, self._data_dir) for row in stored}
        return [entries[day.isoformat()] for day in plan.days]

    def _before_manifest_commit(self, paths: Sequence[Path]) -> None:
        """Hook between writing the files and the manifest transaction; tests simulate a crash here."""

    @contextmanager
    def _manifest_transaction(self, relatives: Sequence[str], what: str) -> Iterator[Connection]:
        """The write transaction that references the in-flight files ``relatives``; claims them last.

        If a sweep reclaimed them meanwhile, it rolls back and removes what is left of them. On any
        other failure the files stay: the commit may have succeeded with only the acknowledgement
        lost, and if it did not, their registrations fall due and the sweep removes them.
        """
        try:
            with write_transaction(self._engine) as conn:
                yield conn
                in_flight.claim(conn, relatives, what=what)
            with self._writes_lock:
                self._writes += 1
        except in_flight.FilesReclaimedError:
            for relative in relatives:
                self._absolute(relative).unlink(missing_ok=True)
            raise

    def _release(self, relatives: Sequence[str]) -> None:
        # Best effort after a failed write: registrations left behind fall due and are swept.
        with contextlib.suppress(StorageError):
            in_flight.release(self._engine, relatives)

    def _absolute(self, relative: str) -> Path:
        return self._data_dir.joinpath(*relative.split("/"))

    def record_access(self, entries: Sequence[Entry], *, request: EntryKey | None = None) -> None:
        """Mark entries as used now (LRU eviction input); each distinct entry counts once per call.

        Best-effort and one UPDATE however many entries. On PostgreSQL a row that another writer
        holds locked (a publish replacing it) is skipped rather than waited for: this transaction
        never waits on an entry's lock, so it can never be part of a deadlock.

        ``request``, a key without slice, is the grain that was asked for: in the same transaction
        it gets one more hit on the store clock's UTC day (``request_counts``), even when no entry
        was read (a backend-served request). Its row is the last lock taken (see ``manifest``).
        """
        if request is not None:
            _require_base(request, "record_access(request=...)")
        ids = {entry.entry_id for entry in entries}
        if not ids and request is None:
            return
        if self._suppressed("engine.record_access"):
            return
        now = self._now()
        with write_transaction(self._engine) as conn:
            if ids:
                c = engine_entries.c
                free = (
                    sa.select(c.id)
                    .where(c.id.in_(manifest.id_list(ids)))
                    .order_by(*(c[name] for name in KEY_COLUMNS))
                    .with_for_update(skip_locked=True)
                )
                statement = (
                    sa.update(engine_entries)
                    .where(c.id.in_(free))
                    .values(last_access_at=now, access_count=c.access_count + 1)
                )
                conn.execute(statement)
            if request is not None:
                requests.count(conn, request, now.date())

    def drop_unreadable(self, entries: Sequence[Entry]) -> int:
        """Forget those of ``entries`` whose file is missing or unreadable, so they are recomputed.

        Pass ``UnreadableEntryError.entries``. In one write transaction, deletes each entry's row
        if it still has the entry's path and version (a row a concurrent writer replaced is kept)
        and the file is missing or its Parquet footer unreadable; a pinned entry is dropped too
        (its data is gone). Returns how many rows were dropped; their files are retired.
        """
        if not entries or self._suppressed("engine.drop_unreadable", len(entries)):
            # Under a dry run the entries stay, so the caller's retry would fail the same way:
            # 0 tells it that nothing was dropped.
            return 0
        retire_after = self._now() + self._grace
        return unreadable.drop_unreadable(self._engine, self._data_dir, entries, retire_after=retire_after)

    def delete(self, key: EntryKey, *, force: bool = False, if_version: int | None = None) -> bool:
        """Remove ``key``'s entry (its file is retired); False when there was none.

        A pinned entry is deleted only with ``force=True``; with ``if_version``, only that version
        (False when another writer replaced it meanwhile). Under a dry run it checks the same
        (reading) and returns what it would have done, deleting nothing.
        """
        if write_guard.is_dry_run():
            current = self.get(key)
            if current is None or (if_version is not None and current.version != if_version):
                return False
            if current.pinned and not force:
                raise InvalidRequestError(_pinned_message(key))
            self._suppressed("engine.delete")
            return True
        self._check_writable("engine.delete")
        with write_transaction(self._engine) as conn:
            manifest.lock_bases(conn, [key])
            row = manifest.select_row(conn, key, for_update=True)
            if row is None or (if_version is not None and row.version != if_version):
                return False
            if row.pinned and not force:
                raise InvalidRequestError(_pinned_message(key))
            conn.execute(sa.delete(engine_entries).where(engine_entries.c.id == row.id))
            owners = {str(row.parquet_path): key.ac_name}
            manifest.retire_unreferenced(conn, owners, self._now() + self._grace)
        return True

    def pin_entries(self, entries: Sequence[Entry]) -> int:
        """Pin those of ``entries`` not pinned yet, in one transaction; returns how many rows changed.

        For slices served from memory to a partition materialization: they now back it and must
        outlive eviction. Pins are per key, so a row replaced since it was read is pinned too (its
        replacement keeps the pin anyway); a row deleted since is simply not there.
        """
        todo = [entry for entry in entries if not entry.pinned]
        if not todo or self._suppressed("engine.pin", len(todo)):
            return 0
        c = engine_entries.c
        changed = 0
        with write_transaction(self._engine) as conn:
            bases = {entry.key.base for entry in todo}
            manifest.lock_bases(conn, bases)  # every writer of a row holds its base lock (``manifest``)
            for base in sorted(bases, key=manifest.sort_key):
                ids = [entry.entry_id for entry in todo if entry.key.base == base]
                statement = (
                    sa.update(engine_entries)
                    .where(manifest.base_condition(base), c.id.in_(manifest.id_list(ids)))
                    .values(pinned=True)
                )
                changed += conn.execute(statement).rowcount
        return changed

    def set_pinned(self, key: EntryKey, pinned: bool) -> None:
        if write_guard.is_dry_run():
            if self.get(key) is None:  # the same answer a real run gives
                raise UnknownNameError(_nothing_to_pin(key))
            self._suppressed("engine.pin")
            return
        self._check_writable("engine.pin")
        statement = sa.update(engine_entries).where(manifest.key_condition(key)).values(pinned=pinned)
        with write_transaction(self._engine) as conn:
            manifest.lock_bases(conn, [key])  # every writer of a row holds its base lock (``manifest``)
            if conn.execute(statement).rowcount == 0:
                raise UnknownNameError(_nothing_to_pin(key))

    def set_meta(self, ac_name: str, key: str, value: str) -> None:
        if self._suppressed("engine.meta"):
            return
        with write_transaction(self._engine) as conn:
            manifest.upsert_meta(conn, ac_name, key, value)

    def sweep(self, *, ac_name: str | None = None) -> SweepReport:
        """Delete retired files past their grace and old orphans; ``ac_name`` limits it to one AC.

        With a manifest shared by several data dirs, always pass ``ac_name``. A dry run deletes
        nothing and reports nothing deleted.
        """
        if self._suppressed("engine.sweep"):
            return SweepReport(files_deleted=0, orphans_deleted=0, bytes_freed=0)
        return sweep(
            self._engine, self._data_dir, now=self._now(), grace=self._grace, ac_name=ac_name, clock=self._now
        )

    # -- lifecycle writes (``LifecycleQueries``), guarded for dry runs ----------------------------

    def prune_requests(self, ac_name: str, *, before: date) -> int:
        if self._suppressed("engine.prune_requests"):
            return 0
        return super().prune_requests(ac_name, before=before)

    def evict(
        self,
        ac_name: str,
        choose: Callable[[ByteTotals, list[EvictionUnit]], Sequence[EvictionUnit]],
        *,
        dry_run: bool = False,
    ) -> tuple[list[EvictionUnit], EvictionResult]:
        # Under a write_guard dry run, the eviction's own read-only dry run answers.
        suppressed = not dry_run and self._suppressed("engine.evict")
        return super().evict(ac_name, choose, dry_run=dry_run or suppressed)

    def evict_units(self, units: Sequence[EvictionUnit]) -> EvictionResult:
        if self._suppressed("engine.evict", max(len(units), 1)):
            with read_transaction(self._engine) as conn:
                return eviction.delete_units(conn, None, units, retire_after=self._now(), dry_run=True)
        return super().evict_units(units)

    # -- the dry-run guard ---------------------------------------------------------------------

    def _suppressed(self, what: str, n: int = 1) -> bool:
        """True when a dry run suppresses the write ``what`` (the guard records it); the caller
        then skips it. A store opened on a stand-in manifest refuses to write outside a dry run."""
        if not write_guard.permit(what, n):
            return True
        self._check_writable(what)
        return False

    def _check_writable(self, what: str) -> None:
        if self._stand_in:
            msg = (
                f"{self!r} was opened during a dry run, before its manifest existed, so it stands in "
                f"an in-memory manifest that must not be written ({what}); open the store again "
                "outside the dry run"
            )
            raise StorageError(msg)

    def _preview(self, key: EntryKey, frame: pl.DataFrame, meta: EntryMeta) -> Entry:
        """What ``publish`` would have stored, for a dry run: version 0 marks it as not stored."""
        now = self._now()
        return Entry(
            key=key,
            entry_id=0,
            version=0,
            path=self._absolute((entry_dir(key) / new_file_name(now)).as_posix()),
            row_count=frame.height,
            byte_size=int(frame.estimated_size()),
            materialized_at=now,
            last_access_at=now,
            access_count=0,
            meta=meta,
        )

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            msg = (
                "the store's clock returned a naive datetime; "
                "return a timezone-aware one (e.g. datetime.now(UTC))"
            )
            raise InvalidRequestError(msg)
        return now.astimezone(UTC)

    def __repr__(self) -> str:
        url = self._engine.url.render_as_string(hide_password=True)
        return f"EntryStore(manifest={url!r}, data_dir={str(self._data_dir)!r})"


def _check_items(items: Sequence[tuple[EntryKey, pl.DataFrame, EntryMeta]]) -> None:
    seen: set[EntryKey] = set()
    for key, frame, meta in items:
        if not isinstance(key, EntryKey) or not isinstance(meta, EntryMeta):
            msg = "publish takes (EntryKey, polars.DataFrame, EntryMeta) items"
            raise InvalidRequestError(msg)
        if not isinstance(frame, pl.DataFrame):
            msg = (
                f"publish of {key.describe()} needs a polars.DataFrame "
                f"(collect a LazyFrame first), got {type(frame).__name__}"
            )
            raise InvalidRequestError(msg)
        if key in seen:
            msg = f"publish_many got {key.describe()} twice; publish each key once per call"
            raise InvalidRequestError(msg)
        seen.add(key)


def _pinned_message(key: EntryKey) -> str:
    return f"entry {key.describe()} is pinned; unpin it with set_pinned(key, False) or pass force=True"


def _nothing_to_pin(key: EntryKey) -> str:
    return f"no entry {key.describe()} to pin; publish it first"


def _require_base(base: EntryKey, what: str) -> None:
    if not isinstance(base, EntryKey) or base.slice_key != WHOLE_ENTRY:
        shown = base.describe() if isinstance(base, EntryKey) else repr(base)
        msg = f"{what} takes the key without a slice, got {shown}; pass key.base"
        raise InvalidRequestError(msg)


def _utc_now() -> datetime:
    return datetime.now(UTC)
