"""The stability window (seed 003 §2.6, §11), pure: which days are final, and which memoized slices
are stable, provisional or stale.

The cutoff is keyed on the event day: with ``hold_off_days = h`` the effective cutoff on day ``t``
is ``t - h``, and a bucket whose last day is on or before it is *stable* (its rows will not change
any more; the update-timestamp column serves only a late-update check). Rows are never filtered by
the cutoff: a day inside the hold-off window is computed like any other and its slice records the
cutoff it was computed under.

A slice whose bucket had passed its recorded cutoff is stable forever. One computed while its bucket
was inside the hold-off window is *provisional*: served, flagged, and recomputed by every refresh;
once the current cutoff passes the bucket's end it is *stale*: never served again, recomputed one
last time (invalidate-only, v0.1; no append-and-merge).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from metric_platform.backends.protocol import DateWindow
from metric_platform.semantics.spec import AnalyticalContext, ProvisionalPolicy


class SliceState(StrEnum):
    STABLE = "stable"
    PROVISIONAL = "provisional"
    STALE = "stale"


def cutoff(ac: AnalyticalContext, today: dt.date) -> dt.date | None:
    """The last stable day on ``today``; None for an AC without a stability block (no hold-off)."""
    if ac.stability is None:
        return None
    return today - dt.timedelta(days=ac.stability.hold_off_days)


def is_final(bucket_end: dt.date, current: dt.date | None) -> bool:
    """Whether a bucket ending on ``bucket_end`` is stable under the ``current`` cutoff."""
    return current is None or bucket_end <= current


def slice_state(bucket_end: dt.date, recorded: dt.date | None, current: dt.date | None) -> SliceState:
    """The state of a slice of the bucket ending ``bucket_end``, computed under cutoff ``recorded``,
    now that the cutoff is ``current`` (None: the AC holds nothing back, every bucket is final).

    A slice recorded without a cutoff was computed while the AC had no hold-off; it stays stable
    (adding a stability block to an AC does not invalidate what was computed before). A slice
    computed provisional under an AC whose stability block was since removed is stale: its bucket
    is final now and the slice may miss rows.
    """
    if recorded is None or bucket_end <= recorded:
        return SliceState.STABLE
    if is_final(bucket_end, current):
        return SliceState.STALE
    return SliceState.PROVISIONAL


def served_window(ac: AnalyticalContext, window: DateWindow, current: dt.date | None) -> DateWindow | None:
    """The part of ``window`` an AC serves: all of it, or under ``provisional: exclude`` only its
    stable days (None when none is stable yet)."""
    stability = ac.stability
    if current is None or stability is None or stability.provisional is not ProvisionalPolicy.EXCLUDE:
        return window
    if window.start > current:
        return None
    return DateWindow(window.start, min(window.end, current))
