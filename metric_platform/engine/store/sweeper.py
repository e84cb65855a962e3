"""Removing files no entry needs any more: retired files past their grace, and crash orphans.

A retired file is deleted only after ``delete_after`` so that a LazyFrame planned from the old
entry still collects. A file that any manifest row references is never deleted, not even when it
is pending: slices share files (``publish_slices``), and a pending row must never outrun a
reference. An orphan (a file no manifest row or pending row names: a publish that crashed before
its manifest commit, or a sweep that crashed between its commit and the unlink) is deleted only
when older than the grace period, and never younger than ``MIN_ORPHAN_AGE`` however small the
grace: a younger file may belong to a publish whose manifest commit is still under way."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from metric_platform.db import read_transaction, write_transaction
from metric_platform.engine.store.layout import candidate_files
from metric_platform.engine.store.records import SweepReport
from metric_platform.engine.store.schema import engine_entries, engine_pending_deletions
from metric_platform.errors import StorageError

MIN_ORPHAN_AGE = timedelta(minutes=5)


def sweep(
    engine: Engine, data_dir: Path, *, now: datetime, grace: timedelta, ac_name: str | None
) -> SweepReport:
    """Delete due retired files and old orphans, for one AC or (``ac_name=None``) the whole data dir."""
    files_deleted, freed = _delete_due_pending(engine, data_dir, now=now, ac_name=ac_name)
    orphans_deleted, orphan_bytes = _delete_orphans(
        engine, data_dir, older_than=now - max(grace, MIN_ORPHAN_AGE), ac_name=ac_name
    )
    return SweepReport(
        files_deleted=files_deleted, orphans_deleted=orphans_deleted, bytes_freed=freed + orphan_bytes
    )


def _delete_due_pending(
    engine: Engine, data_dir: Path, *, now: datetime, ac_name: str | None
) -> tuple[int, int]:
    pending = engine_pending_deletions
    referenced = sa.exists().where(engine_entries.c.parquet_path == pending.c.path)
    condition = sa.and_(pending.c.delete_after <= now, ~referenced)
    if ac_name is not None:
        condition = sa.and_(condition, pending.c.ac_name == ac_name)
    # DELETE ... RETURNING: of two concurrent sweepers only the one that removed a row unlinks its
    # file. Unlinking after the commit keeps the write lock short; a crash in between leaves an
    # orphan that the orphan pass removes later.
    with write_transaction(engine) as conn:
        removed = conn.execute(sa.delete(pending).where(condition).returning(pending.c.path))
        paths = [str(path) for path in removed.scalars()]
    deleted = freed = 0
    for relative in paths:
        size = _unlink(data_dir.joinpath(*relative.split("/")))
        if size is not None:
            deleted += 1
            freed += size
    return deleted, freed


def _delete_orphans(
    engine: Engine, data_dir: Path, *, older_than: datetime, ac_name: str | None
) -> tuple[int, int]:
    referenced = _referenced_paths(engine, ac_name)
    root = data_dir / ac_name if ac_name is not None else data_dir
    cutoff = older_than.timestamp()
    deleted = freed = 0
    for path in candidate_files(root):
        if path.relative_to(data_dir).as_posix() in referenced:
            continue
        try:
            if path.stat().st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        size = _unlink(path)
        if size is not None:
            deleted += 1
            freed += size
    return deleted, freed


def _referenced_paths(engine: Engine, ac_name: str | None) -> set[str]:
    entries_query = sa.select(engine_entries.c.parquet_path).distinct()  # slices share paths
    pending_query = sa.select(engine_pending_deletions.c.path)
    if ac_name is not None:
        entries_query = entries_query.where(engine_entries.c.ac_name == ac_name)
        pending_query = pending_query.where(engine_pending_deletions.c.ac_name == ac_name)
    with read_transaction(engine) as conn:
        referenced = {str(path) for path in conn.execute(entries_query).scalars()}
        referenced.update(str(path) for path in conn.execute(pending_query).scalars())
    return referenced


def _unlink(path: Path) -> int | None:
    """Delete ``path`` and return its size, or None when it was already gone."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        msg = f"cannot delete engine file {path}: {exc}. Check the data dir's permissions."
        raise StorageError(msg) from exc
    return size
