"""The one gate every persistent write goes through, so that a dry run cannot write by accident.

A dry run (seed 000 §6) runs the whole control flow and the real computation but must persist
nothing: no engine entry or manifest row, no ledger event, no outbox message, no spool file. Rather
than a flag each caller checks, the prohibition lives at the two places where bytes reach a store:

- :func:`metric_platform.db.write_transaction` calls :func:`check` before it opens a transaction
  on a persistent database, and raises :class:`DryRunWriteError` under a dry run;
- file writers (engine Parquet entries, the ledger spool) call :func:`check` before they create a
  file.

That backstop fails loudly. The stores themselves ask :func:`permit` first for writes a dry run
expects and skips on purpose (memoizing a served result, access stamps, a ledger append): ``permit``
records the suppressed write, so the run's end log line says what a real run would have written.

The guard is a :mod:`contextvars` value: it follows the code that runs inside :func:`dry_run`,
including nested calls, and never leaks into other threads or requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from metric_platform.errors import InternalError


class DryRunWriteError(InternalError):
    """Code reached a persistent write during a dry run without asking :func:`permit` first."""


@dataclass
class SuppressedWrites:
    """What a dry run did not write, by kind (``"engine.publish"``, ``"ledger.append"``, ...)."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """``"engine.publish x3, ledger.append x2"`` in a stable (sorted) order, or ``"none"``."""
        if not self.counts:
            return "none"
        return ", ".join(f"{what} x{n}" for what, n in sorted(self.counts.items()))


_ACTIVE: ContextVar[SuppressedWrites | None] = ContextVar("metric_platform_dry_run", default=None)


@contextmanager
def dry_run(enabled: bool = True) -> Iterator[SuppressedWrites | None]:
    """Run the body with every persistent write prohibited (when ``enabled``).

    Yields the record of suppressed writes, or None when ``enabled`` is false (the body then
    writes normally). Nested dry runs share the outer record.
    """
    if not enabled:
        yield None
        return
    outer = _ACTIVE.get()
    record = outer if outer is not None else SuppressedWrites()
    token = _ACTIVE.set(record)
    try:
        yield record
    finally:
        _ACTIVE.reset(token)


def is_dry_run() -> bool:
    """True inside :func:`dry_run`."""
    return _ACTIVE.get() is not None


def permit(what: str, n: int = 1) -> bool:
    """May the caller perform the write ``what`` (``n`` of them)? False under a dry run, which
    records it as suppressed; the caller then skips the write and carries on."""
    record = _ACTIVE.get()
    if record is None:
        return True
    record.add(what, n)
    return False


def check(what: str) -> None:
    """The backstop: raise :class:`DryRunWriteError` when a persistent write is reached in a dry run."""
    if _ACTIVE.get() is not None:
        msg = (
            f"dry run: {what} would write to a persistent store. Every store must ask "
            "metric_platform.write_guard.permit() before writing and skip the write when it says no."
        )
        raise DryRunWriteError(msg)
