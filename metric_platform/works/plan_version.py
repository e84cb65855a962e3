"""``planVersion`` (seed 004 §1.3) of an engine-backed work: the fingerprints of what it reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metric_platform.semantics.fingerprint import digest
from metric_platform.semantics.spec import AnalyticalContext


def plan_version(ac: AnalyticalContext, work: str, params: Mapping[str, Any]) -> str:
    """The family's fingerprint for a one-family work; for the others, a digest of the work name
    and every family fingerprint of the AC (a changed definition is a new plan)."""
    family = params.get("family")
    if isinstance(family, str) and family in ac.families:
        return ac.families[family].fingerprint
    metrics = params.get("metrics")
    names = sorted(m for m in metrics if m in ac.families) if isinstance(metrics, list | tuple) else []
    chosen = names or sorted(ac.families)
    return digest({"work": work, "families": {n: ac.families[n].fingerprint for n in chosen}})[:16]
