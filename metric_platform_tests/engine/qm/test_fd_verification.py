"""Which edges a schema's checks verify, and the offending values listed for a refused map: counted
as the engine's own verification counts them (its refusal and these details must agree)."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metric_platform.engine.qm.fd_verification import EXAMPLES, Violation, verified_edges, violations
from metric_platform.engine.serving.dimension_maps import FDViolationError, verify
from metric_platform.semantics.fd_dag import FDEdge
from metric_platform.semantics.loader import load_ac
from metric_platform_tests.engine.conftest import RETAIL_YAML

EDGE = FDEdge("store", "region")


def test_only_non_calendar_edges_are_verified_each_in_the_schema_holding_its_map() -> None:
    ac = load_ac(RETAIL_YAML)
    assert {s: verified_edges(ac, s) for s in ac.schemas} == {
        "transactions": (),
        "stores": (EDGE,),
        "campaigns": (FDEdge("campaign", "channel"),),
    }


def _rows(pairs: list[tuple[str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(pairs, schema={"finer": pl.String, "coarser": pl.String}, orient="row")


def test_a_fanned_out_value_comes_first_then_repeated_ones_by_value() -> None:
    rows = _rows([("S2", "x"), ("S2", "x"), ("S3", "y"), ("S3", "z"), ("S1", "y"), (None, "a"), (None, "a")])
    found = violations(rows, EDGE, "stores", "refused")
    assert (found.holds, found.violating, found.repeated, found.refusal) == (False, 1, 2, "refused")
    assert found.examples == (Violation("S3", ("y", "z")), Violation("S2", ("x",)))


def test_null_counts_as_a_coarser_value_and_examples_stop_at_the_limit() -> None:
    rows = _rows([(f"S{i:02}", c) for i in range(EXAMPLES + 3) for c in ("n", None)])
    found = violations(rows, EDGE, "stores", "refused")
    assert found.violating == EXAMPLES + 3 and found.repeated == EXAMPLES + 3
    assert len(found.examples) == EXAMPLES
    assert found.examples[0] == Violation("S00", ("n", None))


values = st.sampled_from(["a", "b", "c", None])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(values, values), max_size=12))
def test_the_fanned_out_count_is_the_one_the_engine_refuses_with(pairs: list[tuple[str | None, ...]]) -> None:
    rows = _rows([(f, c) for f, c in pairs])
    found = violations(rows, EDGE, "stores", "refused")
    # dimension_maps.verify reads the distinct (finer, coarser) rows with the dimensions' names.
    frame = rows.unique().rename({"finer": "store", "coarser": "region"})
    if found.violating == 0:
        verify(frame, EDGE, "stores")
    else:
        with pytest.raises(FDViolationError, match=f": {found.violating} store value"):
            verify(frame, EDGE, "stores")
