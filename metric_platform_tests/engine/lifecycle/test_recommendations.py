"""Promotion and too-large recommendations (seed 003 §9.3, §15.7): the stanzas are valid YAML an
author can paste."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from metric_platform.engine.lifecycle.recommendations import coarser_grain, recommend
from metric_platform.engine.lifecycle.types import EngineLimits
from metric_platform.engine.store.keys import Domain
from metric_platform.engine.store.records import GrainRequests
from metric_platform.semantics.loader import _StrictLoader, load_ac
from metric_platform.semantics.models import SchemaModel
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform_tests.engine.conftest import RETAIL_YAML

LIMITS = EngineLimits(
    max_bytes_per_ac=10**9, entry_byte_cap=10**8, promotion_min_hits=100, promotion_min_days=3
)


@pytest.fixture(scope="module")
def retail() -> AnalyticalContext:
    return load_ac(RETAIL_YAML)


def hits(family: str, anchor: tuple[str, ...], count: int, days: int) -> GrainRequests:
    return GrainRequests(Domain.METRIC, family, anchor, count, days, date(2026, 11, 1), date(2026, 11, 7))


def paste_cache_hint(tmp_path: Path, family: str, stanza: str) -> AnalyticalContext:
    """The AC with the family's cache_hint replaced by the stanza, loaded and validated."""
    # The project's loader: plain YAML 1.1 would read the joins' `on:` keys as booleans.
    document: dict[str, Any] = yaml.load(RETAIL_YAML.read_text(encoding="utf-8"), Loader=_StrictLoader)
    (spec,) = [f for f in document["metric_families"] if f["name"] == family]
    spec.update(yaml.safe_load(stanza))
    document["source"]["path"] = str(RETAIL_YAML.parent.parent / "sample")
    path = tmp_path / "retail.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return load_ac(path)


def test_a_hot_undeclared_grain_is_recommended_as_a_cache_hint_that_validates(
    retail: AnalyticalContext, tmp_path: Path
) -> None:
    (rec,) = recommend(retail, [hits("revenue", ("store", "month"), 150, 5)], [], LIMITS)
    assert (rec.kind, rec.family, rec.anchor, rec.hits) == ("cache_hint", "revenue", ("store", "month"), 150)
    assert "150 times on 5 day(s)" in rec.reason
    pasted = paste_cache_hint(tmp_path, "revenue", rec.stanza)
    assert pasted.family("revenue").cache_grains == (
        *retail.family("revenue").cache_grains,
        ("store", "month"),
    )


def test_cold_or_bursty_grains_are_not_recommended(retail: AnalyticalContext) -> None:
    few_hits = hits("revenue", ("store", "month"), 99, 7)
    one_burst = hits("revenue", ("store", "month"), 10_000, 2)  # hot for two days, not sustained
    qm = GrainRequests(
        Domain.QM, "transactions", ("transactions", "revenue"), 500, 7, date(2026, 11, 1), date(2026, 11, 7)
    )
    unknown = hits("retired_family", ("store", "month"), 500, 7)
    assert recommend(retail, [few_hits, one_burst, qm, unknown], [], LIMITS) == []


def test_a_hot_cache_hint_grain_is_recommended_as_a_declared_schema(retail: AnalyticalContext) -> None:
    (rec,) = recommend(retail, [hits("revenue", ("region", "month"), 400, 7)], [], LIMITS)
    assert rec.kind == "declared_schema"
    (entry,) = yaml.safe_load(rec.stanza)["schemas"]
    schema = SchemaModel.model_validate(entry)
    assert schema.name == "revenue_by_region_month"
    assert entry["columns"] == {"region": "string", "month": "date", "revenue": "float"}
    assert entry["verification_level"] == "AA"  # the weakest source: stores (AA)


def test_a_result_over_the_cap_recommends_a_coarser_grain(retail: AnalyticalContext, tmp_path: Path) -> None:
    record = {
        "family": "revenue",
        "anchor": ["store", "day"],
        "bytes": 5000,
        "cap": 1000,
        "times": 2,
        "last_seen": "2026-11-20",
    }
    (rec,) = recommend(retail, [], [record], LIMITS)
    assert (rec.kind, rec.anchor, rec.hits) == ("coarser_grain", ("store", "day"), 2)
    assert "5000 bytes, over the 1000-byte entry cap" in rec.reason and "(store, month)" in rec.reason
    pasted = paste_cache_hint(tmp_path, "revenue", rec.stanza)
    assert ("store", "month") in pasted.family("revenue").cache_grains


@pytest.mark.parametrize(
    ("grain", "coarser"),
    [
        (("store", "day"), ("store", "month")),
        (("channel", "week"), ("channel", "month")),
        (("region", "month"), ("region", "quarter")),
        (("region", "year"), ("year",)),
        (("store", "region"), ("store",)),
        (("store",), ()),
    ],
)
def test_coarser_grain_steps_time_first_then_drops_a_dimension(
    retail: AnalyticalContext, grain: tuple[str, ...], coarser: tuple[str, ...]
) -> None:
    assert coarser_grain(retail, grain) == coarser


def test_a_hot_grain_the_base_grain_cannot_reach_is_recommended_as_a_declared_schema(
    retail: AnalyticalContext, tmp_path: Path
) -> None:
    # spend's base grain is (campaign, day): it determines no store, so (store, month) cannot be
    # one of its cache_hint grains (the validator would reject the stanza).
    (rec,) = recommend(retail, [hits("spend", ("store", "month"), 150, 5)], [], LIMITS)
    assert rec.kind == "declared_schema"
    assert "does not determine store" in rec.reason
    SchemaModel.model_validate(yaml.safe_load(rec.stanza)["schemas"][0])
    (ok,) = recommend(retail, [hits("spend", ("channel", "month"), 150, 5)], [], LIMITS)
    assert ok.kind == "cache_hint"
    assert ("channel", "month") in paste_cache_hint(tmp_path, "spend", ok.stanza).family("spend").cache_grains
