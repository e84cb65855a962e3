"""One exception root for the whole platform.

User errors (bad configuration, bad requests, unreachable sources) say what was wrong and how to
fix it; internal errors (storage, invariants) are translated at the storage boundary so that a raw
driver traceback never reaches a user as the only message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class MetricPlatformError(Exception):
    """Root of every error this package raises on purpose."""


class UserError(MetricPlatformError):
    """Something the user supplied is wrong; the message says how to fix it."""


class InternalError(MetricPlatformError):
    """A fault in the platform or its storage, not in the user's input."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file, located by file and YAML path."""

    file: str
    path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        text = f"{where}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(UserError):
    """An analytical context (or other config file) failed validation; carries every issue found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        noun = "problem" if len(self.issues) == 1 else "problems"
        lines = [f"{len(self.issues)} {noun} found:"] + [f"  - {issue}" for issue in self.issues]
        super().__init__("\n".join(lines))


class UnknownNameError(UserError):
    """A name (schema, column, dimension, metric family, profile kind, ...) that does not exist."""


class InvalidRequestError(UserError):
    """A request to the engine or a backend that cannot be served as asked."""


class SourceError(UserError):
    """The source data cannot be read: missing file, corrupt Parquet, unreachable database, unset secret."""


class UnsupportedOperationError(UserError):
    """A declared gap: this backend or store does not support what was asked."""


class StorageError(InternalError):
    """The engine store or a platform database failed (I/O, driver or consistency error)."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest known name, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
