"""Pydantic projections built from the profile frames, and the CLI table rendering."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from pydantic import ValidationError

from metric_platform.engine.qm.distributions import histogram, top_values
from metric_platform.engine.qm.kind_hint import KindHint
from metric_platform.engine.qm.profiling import profile_columns
from metric_platform.engine.qm.projections import (
    ColumnProfile,
    NumericStats,
    TableProfile,
    column_profile_from_frames,
    render_table,
    table_profile_from_frames,
)
from metric_platform.errors import InvalidRequestError, UnknownNameError

SALES = pl.DataFrame(
    {
        "order_id": [1, 2, 3, 4, None],
        "region": ["north", "south", "north", None, "north"],
        "amount": [10.0, 20.0, None, 40.0, 30.0],
        "day": [dt.date(2024, 1, d) for d in (5, 1, 3, 2, 4)],
        "flag": [True, False, True, True, None],
    }
)


def sales_profile() -> TableProfile:
    lf = SALES.lazy()
    return table_profile_from_frames(
        "sales",
        profile_columns(lf, "sales"),
        tops={"region": top_values(lf, "sales", "region")},
        hists={"amount": histogram(lf, "sales", "amount", bins=3)},
    )


def test_table_profile_assembles_stats_blocks_by_dtype() -> None:
    profile = sales_profile()
    assert profile.row_count == 5
    assert [c.column for c in profile.columns] == ["order_id", "region", "amount", "day", "flag"]
    amount = profile.column("amount")
    assert amount.numeric is not None
    assert amount.numeric.std == pytest.approx(12.909944487358056)
    assert amount.numeric.model_copy(update={"std": None}) == NumericStats(
        min=10.0, max=40.0, mean=25.0, std=None, p25=17.5, p50=25.0, p75=32.5
    )
    assert amount.text is None and amount.temporal is None
    assert [(b.index, b.lower, b.upper, b.count) for b in amount.histogram] == [
        (0, 10.0, 20.0, 1),
        (1, 20.0, 30.0, 1),
        (2, 30.0, 40.0, 2),
    ]
    region = profile.column("region")
    assert region.numeric is None and region.text is not None and region.text.max_length == 5
    assert [(v.value, v.count, v.rank) for v in region.top_values] == [("north", 3, 1), ("south", 1, 2)]
    assert (region.null_count, region.null_fraction, region.distinct_count) == (1, 0.2, 2)
    day = profile.column("day")
    assert day.temporal is not None and (day.temporal.min, day.temporal.max) == ("2024-01-01", "2024-01-05")
    flag = profile.column("flag")
    assert flag.kind_hint is KindHint.BOOLEAN
    assert (flag.numeric, flag.text, flag.temporal) == (None, None, None)
    assert (flag.min_text, flag.max_text) == ("false", "true")


def test_unknown_column_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"'nope'.*'order_id', 'region'"):
        sales_profile().column("nope")


def test_projections_are_frozen_forbid_extras_and_round_trip_json() -> None:
    profile = sales_profile()
    with pytest.raises(ValidationError):
        profile.column("amount").row_count = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        NumericStats.model_validate(
            {"min": 1, "max": 1, "mean": 1, "std": None, "p25": 1, "p50": 1, "p75": 1, "x": 1}
        )
    assert TableProfile.model_validate_json(profile.model_dump_json()) == profile


def test_empty_table_projects_with_zero_null_fraction() -> None:
    frame = pl.DataFrame({"a": pl.Series([], dtype=pl.Int64)})
    profile = table_profile_from_frames("t", profile_columns(frame.lazy(), "t"))
    column = profile.column("a")
    assert (profile.row_count, column.null_fraction, column.distinct_count) == (0, 0.0, 0)
    assert column.numeric == NumericStats(
        min=None, max=None, mean=None, std=None, p25=None, p50=None, p75=None
    )
    assert table_profile_from_frames("t", profile_columns(frame.lazy(), "t", [])).row_count == 0


def test_builders_reject_rows_of_another_column_or_schema() -> None:
    profiles = profile_columns(SALES.lazy(), "sales")
    with pytest.raises(InvalidRequestError, match="exactly one profile row"):
        column_profile_from_frames(profiles)
    with pytest.raises(InvalidRequestError, match="'region'"):
        column_profile_from_frames(profiles.slice(0, 1), top=top_values(SALES, "sales", "region"))
    with pytest.raises(InvalidRequestError, match="'other'"):
        table_profile_from_frames("other", profiles)


def test_top_values_are_ordered_by_rank_whatever_the_frame_order() -> None:
    profiles = profile_columns(SALES.lazy(), "sales", ["region"])
    reversed_top = top_values(SALES, "sales", "region").reverse()
    column: ColumnProfile = column_profile_from_frames(profiles, top=reversed_top)
    assert [v.rank for v in column.top_values] == [1, 2]


def test_render_table_is_aligned_and_compact() -> None:
    text = render_table(sales_profile())
    lines = text.splitlines()
    assert lines[0] == "sales: 5 rows, 5 columns"
    header, rule, *body = lines[1:]
    assert header.split() == ["column", "dtype", "kind", "nulls", "distinct", "min", "max", "mean"]
    assert set(rule) <= {"-", " "}
    assert len(body) == 5
    # Columns start where the rule's dashes start, on every line.
    starts = [i for i, ch in enumerate(rule) if ch == "-" and (i == 0 or rule[i - 1] == " ")]
    for line in [header, *body]:
        assert all(line[s - 1] == " " for s in starts[1:] if s < len(line))
    amount = next(line for line in body if line.startswith("amount"))
    assert amount.split() == ["amount", "Float64", "numeric", "1", "(20.0%)", "4", "10.0", "40.0", "25"]
    region = next(line for line in body if line.startswith("region"))
    assert region.split()[-3:] == ["north", "south", "-"]


def test_render_table_truncates_long_values() -> None:
    frame = pl.DataFrame({"note": ["x" * 80]})
    profile = table_profile_from_frames("t", profile_columns(frame.lazy(), "t"))
    line = render_table(profile).splitlines()[-1]
    assert "x" * 31 + "…" in line and "x" * 33 not in line
