"""Removing files no entry needs any more: retired files past their grace, and crash orphans.

A retired file is deleted only after ``delete_after`` so that a LazyFrame planned from the old
entry still collects. A file that any manifest row references is never deleted, not even when it
is pending: slices share files (``publish_slices``), and a pending row must never outrun a
reference.

Files are written before the manifest transaction that references them, so a sweep must not take
a file of a publish still under way, however long its writes and lock waits last. A publish
therefore registers its paths as pending (due ``in_flight.IN_FLIGHT_MAX_AGE`` later) BEFORE it
creates the files, and its manifest transaction swaps the registrations for rows atomically. The
orphan pass lists the files FIRST and reads the referenced and pending paths AFTER, in one
statement (one snapshot): a file it saw existed before that snapshot, so if a publish owns it, the
snapshot holds its registration or its row and the file is kept; a temp file is kept while its
final path is pending. File age plays no part in that. What the pass deletes is a file nothing
guards: left by a sweep that crashed between its commit and its unlink, a temp file of a crashed
write whose registration fell due, or a file of code that does not register. Such a file must
also be older than max(grace, ``MIN_ORPHAN_AGE``), its age checked at the moment of deletion.

Remaining window: a publish that takes longer than ``IN_FLIGHT_MAX_AGE`` from registering to
committing may lose its files to the pending pass; its manifest transaction then finds its
registrations gone and fails (``in_flight.FilesReclaimedError``) rather than commit rows that name
deleted files. A crashed publish's files are removed once their registrations fall due.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from metric_platform import write_guard
from metric_platform.db import read_transaction, write_transaction
from metric_platform.engine.store.layout import candidate_files, guarded_path
from metric_platform.engine.store.records import SweepReport
from metric_platform.engine.store.schema import engine_entries, engine_pending_deletions
from metric_platform.errors import StorageError

MIN_ORPHAN_AGE = timedelta(minutes=5)


def sweep(
    engine: Engine,
    data_dir: Path,
    *,
    now: datetime,
    grace: timedelta,
    ac_name: str | None,
    clock: Callable[[], datetime] | None = None,
) -> SweepReport:
    """Delete due pending files and old orphans, for one AC or (``ac_name=None``) the whole data dir.

    ``clock`` gives the time at which each orphan's age is checked (default: ``now`` throughout).
    A dry run (``write_guard``) deletes nothing and reports nothing deleted.
    """
    if not write_guard.permit("engine.sweep"):
        return SweepReport(files_deleted=0, orphans_deleted=0, bytes_freed=0)
    files_deleted, freed = _delete_due_pending(engine, data_dir, now=now, ac_name=ac_name)
    orphans_deleted, orphan_bytes = _delete_orphans(
        engine,
        data_dir,
        age=max(grace, MIN_ORPHAN_AGE),
        clock=clock or (lambda: now),
        ac_name=ac_name,
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
    # SKIP LOCKED: a row a publisher is claiming is left for the next sweep, and the sweep never
    # waits, so it cannot deadlock with writers (lock order in ``manifest``).
    due = (
        sa.select(pending.c.path)
        .where(condition)
        .order_by(pending.c.path)
        .with_for_update(skip_locked=True, of=pending)
    )
    # DELETE ... RETURNING: of two concurrent sweepers only the one that removed a row unlinks its
    # file. Unlinking after the commit keeps the write lock short; a crash in between leaves an
    # orphan that the orphan pass removes later.
    with write_transaction(engine) as conn:
        removed = conn.execute(sa.delete(pending).where(pending.c.path.in_(due)).returning(pending.c.path))
        paths = [str(path) for path in removed.scalars()]
    deleted = freed = 0
    for relative in paths:
        size = _unlink(data_dir.joinpath(*relative.split("/")))
        if size is not None:
            deleted += 1
            freed += size
    return deleted, freed


def _delete_orphans(
    engine: Engine, data_dir: Path, *, age: timedelta, clock: Callable[[], datetime], ac_name: str | None
) -> tuple[int, int]:
    root = data_dir / ac_name if ac_name is not None else data_dir
    # Files first, then the manifest (see the module docstring): the order is what makes it safe.
    candidates = list(candidate_files(root))
    referenced, pending = _known_paths(engine, ac_name)
    deleted = freed = 0
    for path in candidates:
        relative = path.relative_to(data_dir)
        if relative.as_posix() in referenced or relative.as_posix() in pending:
            continue
        # A temp file is being written while its final path is pending (in flight); once that
        # path is referenced the rename is done, and a temp file left beside it is garbage.
        if guarded_path(relative).as_posix() in pending:
            continue
        try:
            # The age is checked now, not when the sweep started: the walk may have taken long.
            if path.stat().st_mtime >= (clock() - age).timestamp():
                continue
        except FileNotFoundError:
            continue
        size = _unlink(path)
        if size is not None:
            deleted += 1
            freed += size
    return deleted, freed


def _known_paths(engine: Engine, ac_name: str | None) -> tuple[set[str], set[str]]:
    """The paths rows reference, and the pending ones (retired or in flight), read in ONE statement.

    Two statements would be two snapshots on PostgreSQL: a publish committing in between would
    move a path from pending to referenced unseen by both.
    """
    entries = engine_entries.c
    pending = engine_pending_deletions.c
    entries_query = sa.select(entries.parquet_path.label("path"), sa.literal(True).label("referenced"))
    pending_query = sa.select(pending.path.label("path"), sa.literal(False).label("referenced"))
    if ac_name is not None:
        entries_query = entries_query.where(entries.ac_name == ac_name)
        pending_query = pending_query.where(pending.ac_name == ac_name)
    referenced: set[str] = set()
    pending_paths: set[str] = set()
    with read_transaction(engine) as conn:
        for path, is_referenced in conn.execute(sa.union(entries_query, pending_query)):
            (referenced if is_referenced else pending_paths).add(str(path))
    return referenced, pending_paths


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
