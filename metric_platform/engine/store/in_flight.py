"""Registering a publish's files before they exist, so that no sweep mistakes them for orphans.

A publish writes its files before the manifest transaction that references them, and a large
batch may take longer than any file-age threshold. So each path is first registered in its own
short transaction as a pending deletion due ``IN_FLIGHT_MAX_AGE`` later: "delete this file then,
unless a row references it". The sweeper never touches a registered file before then, and never a
referenced one. The manifest transaction that references the files removes their registrations
(``claim``), so a file goes from registered to referenced atomically. A publish that crashes
leaves registrations that fall due like any retired file's, and the sweep deletes their files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from metric_platform import write_guard
from metric_platform.db import write_transaction
from metric_platform.engine.store.schema import engine_pending_deletions
from metric_platform.errors import StorageError

# How long a publish may take between registering its files and committing them. Past it a
# sweep may delete them, and the publish fails instead of committing (see ``claim``).
IN_FLIGHT_MAX_AGE = timedelta(hours=24)
_CHUNK = 1000  # paths per statement, far below every driver's bind-parameter limit


class FilesReclaimedError(StorageError):
    """A publish lost the registration of its files to a sweep; nothing was published."""


def register(engine: Engine, owners: Mapping[str, str], now: datetime) -> None:
    """Register the paths of ``owners`` (relative path -> AC) as in flight, in one short transaction.

    Skipped under a dry run (``write_guard``), like every write of the store."""
    due = now + IN_FLIGHT_MAX_AGE
    values = [{"path": path, "ac_name": owners[path], "delete_after": due} for path in sorted(owners)]
    # A dry run writes no file, so it has nothing to register (the publish itself is skipped first).
    if values and write_guard.permit("engine.in_flight", len(values)):
        with write_transaction(engine) as conn:
            conn.execute(sa.insert(engine_pending_deletions), values)


def claim(conn: Connection, paths: Iterable[str], *, what: str) -> None:
    """Remove the registrations of ``paths`` inside the transaction that makes rows reference them.

    Raises FilesReclaimedError (the caller's transaction must roll back) when a sweep already took
    a registration: its file may be gone, and a row must never reference a deleted file.
    """
    wanted = sorted(set(paths))
    pending = engine_pending_deletions
    claimed: set[str] = set()
    for chunk in _chunks(wanted):
        statement = sa.delete(pending).where(pending.c.path.in_(chunk)).returning(pending.c.path)
        claimed.update(str(path) for path in conn.execute(statement).scalars())
    lost = len(wanted) - len(claimed)
    if lost:
        msg = (
            f"publishing {what} took longer than {IN_FLIGHT_MAX_AGE.total_seconds() / 3600:g} hours "
            f"between writing its files and committing them, and a sweep reclaimed {lost} of its "
            f"{len(wanted)} file(s); nothing was published. Publish again, in smaller batches if it "
            "is that slow."
        )
        raise FilesReclaimedError(msg)


def release(engine: Engine, paths: Sequence[str]) -> None:
    """Forget the registrations of a publish that failed before its manifest transaction."""
    if not paths or not write_guard.permit("engine.in_flight", len(paths)):
        return
    pending = engine_pending_deletions
    with write_transaction(engine) as conn:
        for chunk in _chunks(sorted(paths)):
            conn.execute(sa.delete(pending).where(pending.c.path.in_(chunk)))


def _chunks(paths: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(paths), _CHUNK):
        yield list(paths[start : start + _CHUNK])
