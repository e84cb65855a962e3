"""The engine's store: immutable Parquet entry files plus a transactional manifest (seed 003 §3.4, §6).

Safe across processes (ARCHITECTURE.md §6), not only threads: every read-then-write runs in one
write transaction, the key is unique in the database, and a publish writes its file under a fresh
name before the manifest points at it. Readers therefore see either the old file or the new one,
never a torn one, and a replaced file stays on disk for the grace period.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import polars as pl
import sqlalchemy as sa

from metric_platform.db import create_db_engine, read_transaction, write_transaction
from metric_platform.engine.store import manifest
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.engine.store.layout import entry_dir, new_file_name, write_parquet_atomically
from metric_platform.engine.store.migrations_runner import migrate
from metric_platform.engine.store.records import Entry, EntryMeta, SweepReport
from metric_platform.engine.store.schema import engine_entries, engine_meta
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


class EntryStore:
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
        self._engine = create_db_engine(manifest_url)
        try:
            migrate(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def from_settings(cls, settings: Settings) -> EntryStore:
        return cls(settings.manifest_url, settings.data_dir, grace_seconds=settings.file_grace_seconds)

    @property
    def data_dir(self) -> Path:
        return self._data_dir

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
        """A LazyFrame over the entry's file; it keeps collecting for the grace period after a replacement."""
        if not entry.path.is_file():
            msg = (
                f"the file of entry {entry.key.describe()} v{entry.version} is missing: {entry.path}. "
                "It was removed outside the store, or this Entry is older than the grace period; "
                "get() the entry again, or delete() it so that it is recomputed."
            )
            raise StorageError(msg)
        try:
            frame = pl.scan_parquet(entry.path)
            frame.collect_schema()  # reads the footer now, so a corrupt file fails here, named
        except (pl.exceptions.PolarsError, OSError) as exc:
            msg = (
                f"the file of entry {entry.key.describe()} v{entry.version} is unreadable ({entry.path}): "
                f"{exc}. delete() the entry so that it is recomputed."
            )
            raise StorageError(msg) from exc
        return frame

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

    # -- writing -------------------------------------------------------------------------------

    def publish(self, key: EntryKey, frame: pl.DataFrame, meta: EntryMeta) -> Entry:
        return self.publish_many([(key, frame, meta)])[0]

    def publish_many(self, items: Sequence[tuple[EntryKey, pl.DataFrame, EntryMeta]]) -> list[Entry]:
        """Store every frame and point the manifest at all of them in ONE transaction.

        Files are written (temp name, fsync, rename) before the transaction; a crash in between
        leaves only unreferenced files, which ``sweep`` removes. Replaced files are retired.
        """
        if not items:
            return []
        _check_items(items)
        now = self._now()
        written: list[_Written] = []
        try:
            for key, frame, meta in items:
                relative = entry_dir(key) / new_file_name(now)
                absolute = self._data_dir.joinpath(*relative.parts)
                size = write_parquet_atomically(frame, absolute)
                written.append(_Written(key, meta, relative.as_posix(), absolute, frame.height, size))
        except BaseException:
            # Nothing references these files yet, so removing them now is safe.
            for done in written:
                done.absolute.unlink(missing_ok=True)
            raise
        self._before_manifest_commit([done.absolute for done in written])
        # If this transaction fails we leave the files alone: the commit may have succeeded with
        # only the acknowledgement lost, and the sweep removes them if no row refers to them.
        published: dict[EntryKey, Entry] = {}
        with write_transaction(self._engine) as conn:
            # A fixed lock order, so that two publish_many calls never deadlock on PostgreSQL.
            for done in sorted(written, key=lambda w: manifest.sort_key(w.key)):
                row, replaced = manifest.upsert_entry(
                    conn,
                    done.key,
                    done.meta,
                    parquet_path=done.relative,
                    row_count=done.row_count,
                    byte_size=done.byte_size,
                    now=now,
                )
                if replaced is not None:
                    manifest.retire_file(conn, done.key.ac_name, replaced, now + self._grace)
                published[done.key] = manifest.row_to_entry(row, self._data_dir)
        return [published[key] for key, _, _ in items]

    def _before_manifest_commit(self, paths: Sequence[Path]) -> None:
        """Hook between writing the files and the manifest transaction; tests simulate a crash here."""

    def record_access(self, entries: Sequence[Entry]) -> None:
        """Mark entries as used now (LRU eviction input); each distinct entry counts once per call."""
        ids = sorted({entry.entry_id for entry in entries})
        if not ids:
            return
        c = engine_entries.c
        statement = (
            sa.update(engine_entries)
            .where(c.id.in_(ids))
            .values(last_access_at=self._now(), access_count=c.access_count + 1)
        )
        with write_transaction(self._engine) as conn:
            conn.execute(statement)

    def delete(self, key: EntryKey, *, force: bool = False) -> bool:
        """Remove ``key``'s entry (its file is retired); False when there was none.

        A pinned entry is deleted only with ``force=True``.
        """
        with write_transaction(self._engine) as conn:
            row = manifest.select_row(conn, key, for_update=True)
            if row is None:
                return False
            if row.pinned and not force:
                msg = (
                    f"entry {key.describe()} is pinned; "
                    "unpin it with set_pinned(key, False) or pass force=True"
                )
                raise InvalidRequestError(msg)
            conn.execute(sa.delete(engine_entries).where(engine_entries.c.id == row.id))
            manifest.retire_file(conn, key.ac_name, str(row.parquet_path), self._now() + self._grace)
        return True

    def set_pinned(self, key: EntryKey, pinned: bool) -> None:
        statement = sa.update(engine_entries).where(manifest.key_condition(key)).values(pinned=pinned)
        with write_transaction(self._engine) as conn:
            if conn.execute(statement).rowcount == 0:
                msg = f"no entry {key.describe()} to pin; publish it first"
                raise UnknownNameError(msg)

    def set_meta(self, ac_name: str, key: str, value: str) -> None:
        with write_transaction(self._engine) as conn:
            manifest.upsert_meta(conn, ac_name, key, value)

    def sweep(self, *, ac_name: str | None = None) -> SweepReport:
        """Delete retired files past their grace and old orphans; ``ac_name`` limits it to one AC.

        With a manifest shared by several data dirs, always pass ``ac_name``.
        """
        return sweep(self._engine, self._data_dir, now=self._now(), grace=self._grace, ac_name=ac_name)

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


def _utc_now() -> datetime:
    return datetime.now(UTC)
