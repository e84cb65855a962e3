"""What one execution ended as: its status, its error, and the result ``execute`` returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from metric_platform.errors import StorageError, UserError
from metric_platform.execution.context import ExecutionContext
from metric_platform.execution.work import WorkOutcome
from metric_platform.ledger.events import JSONValue

# Seed 004 §6: never persist large error blobs; a message this long says what went wrong.
MAX_ERROR_MESSAGE = 2000


class ExecutionStatus(StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class StepError:
    """Seed 004 ``StepSnapshot.error``: the exception's class name, its message, and whether
    running the same step again may succeed."""

    code: str
    message: str
    retryable: bool

    @classmethod
    def from_exception(cls, exc: BaseException) -> StepError:
        message = str(exc).strip() or type(exc).__name__
        if len(message) > MAX_ERROR_MESSAGE:
            message = message[: MAX_ERROR_MESSAGE - 3] + "..."
        return cls(code=type(exc).__name__, message=message, retryable=is_retryable(exc))

    def to_json(self) -> dict[str, JSONValue]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


def is_retryable(exc: BaseException) -> bool:
    """May the same step succeed when run again unchanged?

    An exception may say so itself (a boolean ``retryable`` attribute). Otherwise storage and
    I/O faults may be transient; a user error (bad input or configuration) repeats until fixed,
    and any other exception is taken as a bug, which repeats too.
    """
    declared = getattr(exc, "retryable", None)
    if isinstance(declared, bool):
        return declared
    if isinstance(exc, UserError):
        return False
    return isinstance(exc, StorageError | OSError)  # OSError covers TimeoutError and ConnectionError


@dataclass(frozen=True)
class ExecutionResult:
    """One execution: ``outcome`` when COMPLETED, ``error`` when FAILED; ``suppressed`` lists what
    a dry run did not write (by kind, e.g. ``{"engine.publish": 3}``) and is None for a real run.

    Times are the engine clock's (UTC); ``duration_ms`` is measured on a monotonic clock.
    """

    context: ExecutionContext
    status: ExecutionStatus
    outcome: WorkOutcome | None
    started_at: dt.datetime
    completed_at: dt.datetime
    duration_ms: float
    suppressed: Mapping[str, int] | None = None
    error: StepError | None = None
    # Set when the step had completed before under the same identity: the outcome is the ledger's
    # record (artifacts and summary, no value) and the work did not run again.
    replayed_from_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.COMPLETED
