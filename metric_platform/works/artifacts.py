"""Engine entries as ledger artifacts (seed 004 §2): references, never payloads."""

from __future__ import annotations

from collections.abc import Iterable

from metric_platform.engine.store.records import Entry
from metric_platform.ledger.events import ArtifactRef


def entry_ref(entry: Entry) -> ArtifactRef:
    """``engine://<ac>/<domain>/<dataset>/<anchor>/<slice>?v=<version>``: the entry's key and
    version, which name its immutable file (the manifest resolves the path)."""
    key = entry.key
    uri = (
        f"engine://{key.ac_name}/{key.domain.value}/{key.dataset_id}/{key.anchor_signature or '_total'}/"
        f"{key.slice_key or '_all'}?v={entry.version}"
    )
    return ArtifactRef(uri=uri, kind=f"engine.{key.domain.value.lower()}-entry", size_bytes=entry.byte_size)


def entry_refs(entries: Iterable[Entry]) -> tuple[ArtifactRef, ...]:
    return tuple(entry_ref(e) for e in sorted(entries, key=lambda e: (e.key.describe(), e.version)))
