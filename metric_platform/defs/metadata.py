"""What a data engineer sees on a materialization: how it was served (exact / rollup from which
grain / backend, and which days the backend computed), rows, bytes, provisional or stable and
under which cutoff, the verification level, a small preview, and the ledger step behind it.

Everything comes from the work's JSON summary, not its value, so a step the ledger answers from
its record (a retried step that had completed) reports the same figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from metric_platform.execution.results import ExecutionResult


def summary_of(result: ExecutionResult) -> Mapping[str, Any]:
    assert result.outcome is not None, "a completed execution has an outcome"
    return result.outcome.summary


def _stability(provisional: object, cutoff: object, path: object = None) -> str:
    if path == "empty":
        return f"excluded: no day is stable yet (cutoff {cutoff}); the AC serves stable days only"
    if cutoff is None:
        return "stable (the AC holds nothing back)"
    return f"provisional (cutoff {cutoff})" if provisional else f"stable (cutoff {cutoff})"


def materialization_metadata(result: ExecutionResult) -> dict[str, dg.RawMetadataValue]:
    """The metadata of a serve's materialization (one partition, or a range as one)."""
    s = summary_of(result)
    identity = result.context.identity
    source = ", ".join(s.get("source_anchor", [])) or "()"
    meta: dict[str, dg.RawMetadataValue] = {
        "served": s.get("explain", s.get("path", "")),
        "serving_path": s.get("path", ""),
        "served_from_grain": source,
        "dagster/row_count": dg.MetadataValue.int(int(s.get("rows", 0))),
        "bytes": dg.MetadataValue.int(int(s.get("bytes") or 0)),
        "stability": _stability(s.get("provisional"), s.get("stability_cutoff"), s.get("path")),
        "stability_cutoff": s.get("stability_cutoff") or "none",
        "verification_level": s.get("verification_level") or "",
        "backend_ranges": ", ".join(s.get("backend_ranges", [])) or "none (served from memory)",
        "ledger_run": identity.run_id,
        "ledger_step": identity.step_id,
    }
    if "preview" in s:
        meta["preview"] = dg.MetadataValue.md(str(s["preview"]))
    if result.replayed_from_seq is not None:
        meta["replayed_from_ledger_seq"] = dg.MetadataValue.int(result.replayed_from_seq)
    return meta


def range_metadata(result: ExecutionResult) -> dict[str, dg.RawMetadataValue]:
    """The metadata every partition of a range run shares: how the range was served, and its
    totals under ``range_*`` keys (each partition's own figures go on its own materialization)."""
    meta = materialization_metadata(result)
    meta["range_rows"] = meta.pop("dagster/row_count")
    meta["range_bytes"] = meta.pop("bytes")
    meta["range_stability"] = meta.pop("stability")
    return meta


def partition_metadata(
    partition_keys: Sequence[str], result: ExecutionResult
) -> Iterator[tuple[str, dict[str, dg.RawMetadataValue]]]:
    """Each partition of a range run with its own figures: rows, bytes, how it was served,
    stability. Dagster records one materialization per partition of a range anyway; these go onto
    it (``add_asset_metadata(partition_key=...)``), so the range stores no extra event (an
    observation per partition doubled the events and cost 1.5x the run: benchmark_reports/
    dagster_assets.md). A partition key is its bucket's first day."""
    buckets = {b["bucket"]: b for b in summary_of(result).get("buckets", [])}
    for key in partition_keys:
        bucket = buckets.get(key)
        if bucket is None:  # no row in that bucket: the partition is served, and empty
            yield key, {"dagster/row_count": dg.MetadataValue.int(0), "bytes": dg.MetadataValue.int(0)}
            continue
        yield (
            key,
            {
                "dagster/row_count": dg.MetadataValue.int(int(bucket["rows"])),
                "bytes": dg.MetadataValue.int(int(bucket["bytes"] or 0)),
                "partition_served": bucket["served"],  # "served" is the range's account
                "stability": _stability(bucket["provisional"], bucket["stability_cutoff"]),
            },
        )
