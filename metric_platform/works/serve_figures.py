"""Per-bucket figures of a serve: what a Dagster partition's materialization shows about its day,
week or month (rows, bytes, how it was served, provisional or stable).

A range run (a single-run backfill) serves many partitions at once and reports one
materialization for all of them; these figures let it add one observation per partition. They go
into the work's JSON summary, so a step the ledger answers from its record still has them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from metric_platform.engine.serving.types import PathKind, Provenance
from metric_platform.engine.store.records import Entry
from metric_platform.ledger.events import JSONValue

PREVIEW_ROWS = 5


def bucket_figures(
    frame: pl.DataFrame, time_column: str | None, provenance: Provenance, slices: Sequence[Entry]
) -> list[dict[str, JSONValue]]:
    """One record per time bucket of ``frame`` (its ``time_column``, the bucket's first day), in
    bucket order; ``slices`` are the memoized slices of the served grain (their bytes). A bucket
    the backend computed in this serve says ``backend``; the others say the serve's own path (exact
    or rollup). Without a time column: no buckets."""
    if time_column is None:
        return []
    counts = frame.group_by(time_column).len().sort(time_column)
    by_day = {s.key.slice_day: s for s in slices if s.key.slice_day is not None}
    provisional = set(provenance.provisional_buckets)
    cutoff = provenance.stability_cutoff
    out: list[dict[str, JSONValue]] = []
    for bucket, rows in counts.iter_rows():
        day: dt.date = bucket
        entry = by_day.get(day)
        end = entry.slice_end if entry is not None and entry.slice_end is not None else day
        out.append(
            {
                "bucket": day.isoformat(),
                "rows": int(rows),
                "bytes": entry.byte_size if entry is not None else None,
                "served": _served(day, end, provenance),
                "provisional": day in provisional,
                "stability_cutoff": cutoff.isoformat() if cutoff else None,
            }
        )
    return out


def _served(start: dt.date, end: dt.date, provenance: Provenance) -> str:
    path = provenance.path
    if any(r.start <= end and start <= r.end for r in path.backend_ranges):
        return PathKind.BACKEND.value
    if path.kind is not PathKind.BACKEND:
        return path.kind.value
    # A backend serve that found this bucket memoized read it from memory, at the grain or finer.
    return (PathKind.EXACT if path.source_anchor == path.target_anchor else PathKind.ROLLUP).value


def preview(frame: pl.DataFrame, rows: int = PREVIEW_ROWS) -> str:
    """A small Markdown table of the first rows (the UI renders it)."""
    head = frame.head(rows)
    if head.is_empty():
        return "_no rows_"
    columns = head.columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in head.iter_rows()]
    return "\n".join(lines)
