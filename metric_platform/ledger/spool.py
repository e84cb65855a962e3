"""The fail-open spool (seed 004 §5): events the ledger could not take in time, kept on local disk.

When a non-critical event (StepStarted) cannot be appended within the write budget, the recorder
spools it here and the step carries on; a later :meth:`Spool.replay` appends it. Safety comes from
the event's identity:

- one file per event, named by its idempotency key and written atomically (temp file, fsync,
  rename, directory fsync): a reader never sees half a file, and spooling the same event twice
  leaves one file;
- a replay appends the event under the same key, so an event that did reach the ledger after all
  (the append timed out on our side but committed) comes back as a DUPLICATE, never a second row;
- a file is deleted only after its append committed: a crash mid-replay re-appends (a DUPLICATE)
  rather than losing the event;
- a file that cannot be decoded, whose event conflicts with the stored one, or whose append the
  database refuses for good (a DataError or IntegrityError, e.g. a string holding a NUL character,
  which PostgreSQL rejects) is moved to ``corrupt/`` with a ``.reason.txt`` beside it and counted;
  it never stops the replay, so one bad file cannot hold back the files after it;
- a transient failure (connection, timeout, lock: an OperationalError) stops the replay: the
  ledger is unavailable, and every later append would wait out the same timeout. Any other
  storage failure keeps the file for the next replay and goes on with the next one.

A replayed event is persisted late (after the step's later events): the projector tolerates that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol, assert_never

import sqlalchemy as sa

from metric_platform import write_guard
from metric_platform.errors import StorageError
from metric_platform.ledger.codec import EventDecodeError, event_from_json, event_to_json
from metric_platform.ledger.errors import LedgerConflictError
from metric_platform.ledger.events import NewEvent
from metric_platform.ledger.store import AppendOutcome, AppendResult

_LOG = logging.getLogger(__name__)
_SUFFIX = ".json"
_TEMP_SUFFIX = ".tmp"
CORRUPT_DIR = "corrupt"
# A temp file this old belongs to a writer that died mid-write; younger ones may be in progress.
_STALE_TEMP_SECONDS = 3600.0


class EventAppender(Protocol):
    """What the spool and the recorder need of a ledger store (``RunEventStore`` satisfies it)."""

    def append(self, event: NewEvent, *, timeout_ms: int | None = None) -> AppendResult: ...


@dataclass(frozen=True)
class ReplayReport:
    """``replayed``: appended now; ``duplicates``: already in the ledger (file dropped); ``failed``:
    appends that raised a storage error and whose files were kept (the replay stops at a transient
    one: the store is down); ``quarantined``: files moved to ``corrupt/``; ``remaining``: files
    still waiting (all of them in a dry run)."""

    replayed: int = 0
    duplicates: int = 0
    failed: int = 0
    quarantined: int = 0
    remaining: int = 0


class Spool:
    """A directory of spooled events; created when the first event is spooled, not before."""

    def __init__(self, directory: Path | str) -> None:
        self._dir = Path(directory)

    @property
    def directory(self) -> Path:
        return self._dir

    def path_for(self, event: NewEvent) -> Path:
        return self._dir / f"{event.idempotency_key}{_SUFFIX}"

    def pending(self) -> list[Path]:
        """The spooled event files, by name (corrupt and temporary files excluded)."""
        if not self._dir.is_dir():
            return []
        return sorted(p for p in self._dir.iterdir() if _is_event_file(p.name) and p.is_file())

    def has_pending(self) -> bool:
        """Whether any spooled event waits: stops at the first one and creates nothing, so a caller
        can check before each append and replay only when there is something to replay."""
        try:
            with os.scandir(self._dir) as entries:
                return any(_is_event_file(entry.name) and entry.is_file() for entry in entries)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def put(self, event: NewEvent) -> Path | None:
        """Write ``event`` to its file atomically and return the path; None in a dry run (nothing
        written, the directory not even created). Raises :class:`StorageError` when the disk refuses."""
        if not write_guard.permit("ledger.spool"):
            return None
        data = json.dumps(event_to_json(event), sort_keys=True, ensure_ascii=False, allow_nan=False)
        target = self.path_for(event)
        temp = self._dir / f".{target.stem}.{uuid.uuid4().hex}{_TEMP_SUFFIX}"
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            _write_durably(temp, data.encode("utf-8"))
            os.replace(temp, target)
            _fsync_directory(self._dir)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            msg = (
                f"could not spool ledger event {event.event_type} of run {event.identity.run_id!r} to "
                f"{target}: {exc}. Check the free space and permissions of {self._dir}."
            )
            raise StorageError(msg) from exc
        return target

    def replay(self, store: EventAppender, *, timeout_ms: int | None = None) -> ReplayReport:
        """Append every spooled event, oldest ``emitted_at`` first; see the module docstring."""
        files = self.pending()
        if write_guard.is_dry_run():
            if files:
                write_guard.permit("ledger.spool.replay", len(files))
            return ReplayReport(remaining=len(files))
        self._remove_stale_temp_files()
        replayed = duplicates = failed = quarantined = 0
        loaded: list[tuple[NewEvent, Path]] = []
        for path in files:
            try:
                loaded.append((self._load(path), path))
            except FileNotFoundError:
                continue  # another replayer took it
            except (EventDecodeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                quarantined += self._quarantine(path, f"unreadable spool file: {exc}")
        loaded.sort(key=lambda item: (item[0].emitted_at, item[0].idempotency_key))
        for event, path in loaded:
            try:
                result = store.append(event, timeout_ms=timeout_ms)
            except LedgerConflictError as exc:
                quarantined += self._quarantine(path, f"conflicts with the event stored under its key: {exc}")
                continue
            except StorageError as exc:
                kind = failure_kind(exc)
                if kind is FailureKind.PERMANENT:
                    quarantined += self._quarantine(path, f"the ledger refuses this event: {exc}")
                    continue
                failed += 1
                if kind is FailureKind.TRANSIENT:
                    _LOG.warning("spool replay stopped, the ledger is unavailable: %s", exc)
                    break
                _LOG.warning("spool file %s kept for a later replay: %s", path.name, exc)
                continue
            match result.outcome:
                case AppendOutcome.APPENDED:
                    replayed += 1
                case AppendOutcome.DUPLICATE:
                    duplicates += 1
                case AppendOutcome.SUPPRESSED:
                    continue  # a dry run began inside the store's own check: keep the file
                case unreachable:
                    assert_never(unreachable)
            path.unlink(missing_ok=True)
        report = ReplayReport(replayed, duplicates, failed, quarantined, remaining=len(self.pending()))
        if files:
            _LOG.info("spool replay of %s: %s", self._dir, report)
        return report

    def _load(self, path: Path) -> NewEvent:
        event = event_from_json(json.loads(path.read_text(encoding="utf-8")))
        if path.stem != event.idempotency_key:
            msg = f"the file is named {path.name} but holds the event with key {event.idempotency_key}"
            raise EventDecodeError(msg)
        try:
            event.payload_text  # noqa: B018 - the store refuses data that is not strict JSON (NaN)
        except (TypeError, ValueError) as exc:
            msg = f"its data is not strict JSON: {exc}"
            raise EventDecodeError(msg) from exc
        return event

    def _quarantine(self, path: Path, reason: str) -> int:
        """Move ``path`` to ``corrupt/`` with its reason beside it; 0 when another replayer did."""
        corrupt = self._dir / CORRUPT_DIR
        target = corrupt / path.name
        if target.exists():
            target = corrupt / f"{path.stem}.{uuid.uuid4().hex[:8]}{path.suffix}"
        try:
            corrupt.mkdir(exist_ok=True)
            os.replace(path, target)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            _LOG.error(
                "could not move the bad spool file %s aside (%s); reason it is bad: %s", path, exc, reason
            )
            return 0
        with contextlib.suppress(OSError):
            target.with_name(f"{target.name}.reason.txt").write_text(reason + "\n", encoding="utf-8")
        _LOG.warning("spool file %s moved to %s: %s", path.name, target, reason)
        return 1

    def _remove_stale_temp_files(self) -> None:
        if not self._dir.is_dir():
            return
        cutoff = time.time() - _STALE_TEMP_SECONDS
        for temp in self._dir.glob(f".*{_TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()


class FailureKind(Enum):
    TRANSIENT = "transient"  # the database is unavailable now: connection, timeout, lock
    PERMANENT = "permanent"  # this event is refused, and always will be: data, integrity
    UNKNOWN = "unknown"


_TRANSIENT_DBAPI = frozenset({"OperationalError", "InterfaceError"})
_PERMANENT_DBAPI = frozenset({"DataError", "IntegrityError"})


def failure_kind(exc: StorageError) -> FailureKind:
    """Whether ``exc`` (an append's failure) is worth retrying, from the driver error behind it.

    The store translates driver errors into StorageError; the SQLAlchemy error is in the
    ``__cause__`` chain, and its DB-API error (``.orig``) is classified by its PEP 249 class,
    as SQLAlchemy itself does: psycopg's QueryCanceled, LockNotAvailable and DeadlockDetected are
    OperationalErrors, its UntranslatableCharacter (``\u0000`` in JSONB) a DataError, as are
    sqlite3's.
    """
    cause: BaseException | None = exc.__cause__
    while cause is not None and not isinstance(cause, sa.exc.DBAPIError):
        cause = cause.__cause__
    if cause is None:
        return FailureKind.UNKNOWN
    if cause.connection_invalidated:
        return FailureKind.TRANSIENT
    names = {kind.__name__ for kind in (*type(cause).__mro__, *type(cause.orig).__mro__)}
    if names & _TRANSIENT_DBAPI:
        return FailureKind.TRANSIENT
    if names & _PERMANENT_DBAPI:
        return FailureKind.PERMANENT
    return FailureKind.UNKNOWN


def _is_event_file(name: str) -> bool:
    return name.endswith(_SUFFIX) and not name.startswith(".")


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
