"""profile_columns: SQL semantics, every dtype family, one pass, and two independent oracles."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metric_platform.engine.qm.profiling import PROFILE_SCHEMA, profile_columns
from metric_platform.errors import UnknownNameError


def profile_row(series: pl.Series) -> dict[str, Any]:
    frame = profile_columns(pl.DataFrame([series]).lazy(), "s")
    assert frame.schema == PROFILE_SCHEMA
    return frame.row(0, named=True)


def test_schema_and_order_follow_the_request() -> None:
    lf = pl.LazyFrame({"a": [1], "b": ["x"], "c": [True]})
    out = profile_columns(lf, "sales", ["c", "a", "c"])
    assert out.schema == PROFILE_SCHEMA
    assert out["column"].to_list() == ["c", "a"]
    assert out["schema"].to_list() == ["sales", "sales"]
    assert profile_columns(lf, "sales")["column"].to_list() == ["a", "b", "c"]


def test_unknown_column_names_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"'nope'.*\['a'\]"):
        profile_columns(pl.LazyFrame({"a": [1]}), "s", ["nope"])


def test_no_columns_gives_an_empty_frame_in_the_schema() -> None:
    out = profile_columns(pl.LazyFrame({"a": [1]}), "s", [])
    assert out.is_empty()
    assert out.schema == PROFILE_SCHEMA


def test_distinct_ignores_null_like_count_distinct() -> None:
    row = profile_row(pl.Series("a", ["x", None, "x", "y", None]))
    assert (row["row_count"], row["null_count"], row["distinct_count"]) == (5, 2, 2)


@pytest.mark.parametrize(
    "series",
    [
        pl.Series("i", [None, None], dtype=pl.Int64),
        pl.Series("f", [None, None], dtype=pl.Float64),
        pl.Series("s", [None, None], dtype=pl.String),
        pl.Series("d", [None, None], dtype=pl.Date),
        pl.Series("b", [None, None], dtype=pl.Boolean),
        pl.Series("n", [None, None], dtype=pl.Null),
    ],
)
def test_all_null_columns_have_zero_distinct_and_null_stats(series: pl.Series) -> None:
    row = profile_row(series)
    assert (row["row_count"], row["null_count"], row["distinct_count"]) == (2, 2, 0)
    stats = [k for k in PROFILE_SCHEMA if k not in ("schema", "column", "dtype", "kind_hint")]
    assert all(row[k] is None for k in stats if not k.endswith("_count"))


@pytest.mark.parametrize("dtype", [pl.Int64, pl.Float64, pl.String, pl.Date, pl.Boolean, pl.Categorical])
def test_empty_frames_have_zero_counts(dtype: type[pl.DataType]) -> None:
    row = profile_row(pl.Series("c", [], dtype=dtype))
    assert (row["row_count"], row["null_count"], row["distinct_count"]) == (0, 0, 0)
    assert row["min_text"] is None and row["mean"] is None and row["mean_length"] is None


def test_numeric_stats_use_sample_std_and_linear_quantiles() -> None:
    row = profile_row(pl.Series("x", [1, 2, 3, 4, None]))
    assert (row["min_num"], row["max_num"], row["mean"]) == (1.0, 4.0, 2.5)
    assert row["std"] == pytest.approx(statistics.stdev([1, 2, 3, 4]))
    assert (row["p25"], row["p50"], row["p75"]) == (1.75, 2.5, 3.25)
    assert (row["min_text"], row["max_text"]) == ("1", "4")
    assert row["min_length"] is None and row["min_temporal"] is None


def test_std_of_a_single_value_is_null() -> None:
    assert profile_row(pl.Series("x", [3.0]))["std"] is None


def test_booleans_are_not_numeric() -> None:
    row = profile_row(pl.Series("flag", [True, False, True]))
    assert row["mean"] is None and row["min_num"] is None
    assert (row["min_text"], row["max_text"], row["distinct_count"]) == ("false", "true", 2)


def test_text_stats_count_characters() -> None:
    row = profile_row(pl.Series("s", ["héllo", "b", None, "b c"]))
    assert (row["min_length"], row["max_length"]) == (1, 5)
    assert row["mean_length"] == pytest.approx(3.0)
    assert (row["min_text"], row["max_text"]) == ("b", "héllo")


def test_categorical_min_max_compare_text_not_category_order() -> None:
    row = profile_row(pl.Series("c", ["zeta", "alpha", None], dtype=pl.Enum(["zeta", "alpha"])))
    assert (row["min_text"], row["max_text"], row["min_length"]) == ("alpha", "zeta", 4)


NAIVE = pl.Series("t", [dt.datetime(2024, 1, 2, 3, 4, 5, 500000), dt.datetime(2023, 6, 1)])


@pytest.mark.parametrize(
    ("series", "parse", "low", "high"),
    [
        (
            pl.Series("d", [dt.date(2024, 3, 1), None, dt.date(2023, 12, 31)]),
            dt.date.fromisoformat,
            "2023-12-31",
            "2024-03-01",
        ),
        (NAIVE, dt.datetime.fromisoformat, "2023-06-01T00:00:00", "2024-01-02T03:04:05.500"),
        (
            NAIVE.dt.replace_time_zone("Europe/Paris"),
            dt.datetime.fromisoformat,
            "2023-06-01T00:00:00+02:00",
            "2024-01-02T03:04:05.500+01:00",
        ),
        (pl.Series("tm", [dt.time(13, 0), dt.time(1, 2, 3)]), dt.time.fromisoformat, "01:02:03", "13:00:00"),
    ],
)
def test_temporal_bounds_are_iso_8601_and_round_trip(
    series: pl.Series, parse: Callable[[str], object], low: str, high: str
) -> None:
    row = profile_row(series)
    assert (row["min_temporal"], row["max_temporal"]) == (low, high)
    assert (row["min_text"], row["max_text"]) == (low, high)
    assert (parse(low), parse(high)) == (series.min(), series.max())


def test_other_dtypes_get_counts_only() -> None:
    row = profile_row(pl.Series("l", [[1], [1], None, [2]]))
    assert (row["null_count"], row["distinct_count"]) == (1, 2)
    assert row["min_text"] is None and row["mean"] is None


# --- one pass over the source --------------------------------------------------------------------


def counting_frame(frame: pl.DataFrame) -> tuple[pl.LazyFrame, list[int]]:
    """A LazyFrame whose source records each time it is read."""
    reads: list[int] = []

    def source(batch: pl.DataFrame) -> pl.DataFrame:
        reads.append(batch.height)
        return batch

    return frame.lazy().map_batches(source), reads


def wide_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "region": ["n", "s", None, "n"],
            "amount": [1.5, None, 2.0, 9.0],
            "day": [dt.date(2024, 1, d) for d in (1, 2, 3, 4)],
            "flag": [True, None, False, True],
        }
    )


def test_profiling_reads_the_source_once_for_all_columns() -> None:
    lf, reads = counting_frame(wide_frame())
    profile_columns(lf, "s")
    assert reads == [4]  # one read, not one per column


def test_profiling_collects_once(monkeypatch: pytest.MonkeyPatch) -> None:
    collects: list[int] = []
    original: Callable[..., pl.DataFrame] = pl.LazyFrame.collect

    def counted(self: pl.LazyFrame, *args: Any, **kwargs: Any) -> pl.DataFrame:
        collects.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pl.LazyFrame, "collect", counted)
    profile_columns(wide_frame().lazy(), "s")
    assert len(collects) == 1


def test_lazy_and_collected_inputs_give_the_same_profile() -> None:
    lf, _ = counting_frame(wide_frame())
    lazy_result = profile_columns(lf.filter(pl.col("id") > 1), "s")
    eager_result = profile_columns(wide_frame().filter(pl.col("id") > 1), "s")
    assert lazy_result.equals(eager_result)
    assert lazy_result["row_count"].to_list() == [3] * 5


# --- property: agreement with a plain-Python reference ------------------------------------------

FINITE = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def linear_quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    low = math.floor(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


def check_counts(row: dict[str, Any], values: list[Any]) -> list[Any]:
    present = [v for v in values if v is not None]
    assert row["row_count"] == len(values)
    assert row["null_count"] == len(values) - len(present)
    assert row["distinct_count"] == len(set(present))
    return present


@given(st.lists(st.one_of(st.none(), INT64), max_size=40))
def test_integers_match_python(values: list[int | None]) -> None:
    row = profile_row(pl.Series("n", values, dtype=pl.Int64))
    present = check_counts(row, values)
    if not present:
        assert row["min_text"] is None and row["mean"] is None
        return
    assert (row["min_text"], row["max_text"]) == (str(min(present)), str(max(present)))
    assert row["min_num"] == float(min(present)) and row["max_num"] == float(max(present))
    scale = max(abs(v) for v in present)
    assert math.isclose(row["mean"], sum(present) / len(present), rel_tol=1e-9, abs_tol=1e-9 * scale)


@given(st.lists(st.one_of(st.none(), FINITE), max_size=40))
def test_floats_match_python(values: list[float | None]) -> None:
    row = profile_row(pl.Series("x", values, dtype=pl.Float64))
    present = check_counts(row, values)
    if not present:
        assert row["min_num"] is None and row["p50"] is None
        return
    assert (row["min_num"], row["max_num"]) == (min(present), max(present))
    assert float(row["min_text"]) == min(present)
    tol = 1e-9 * max([1.0, *(abs(v) for v in present)])
    assert math.isclose(row["mean"], math.fsum(present) / len(present), rel_tol=1e-9, abs_tol=tol)
    for key, q in (("p25", 0.25), ("p50", 0.5), ("p75", 0.75)):
        assert math.isclose(row[key], linear_quantile(present, q), rel_tol=1e-9, abs_tol=tol)
    if len(present) >= 2:
        assert math.isclose(row["std"], statistics.stdev(present), rel_tol=1e-6, abs_tol=tol)


@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=40))
def test_strings_match_python(values: list[str | None]) -> None:
    row = profile_row(pl.Series("s", values, dtype=pl.String))
    present = check_counts(row, values)
    if not present:
        assert row["min_text"] is None and row["max_length"] is None
        return
    assert (row["min_text"], row["max_text"]) == (min(present), max(present))
    lengths = [len(v) for v in present]
    assert (row["min_length"], row["max_length"]) == (min(lengths), max(lengths))
    assert row["mean_length"] == pytest.approx(sum(lengths) / len(lengths))


# --- oracle: DuckDB's SQL aggregates --------------------------------------------------------------


def random_frame(seed: int, rows: int = 500) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ints = rng.integers(-50, 50, rows)
    floats = rng.normal(100.0, 25.0, rows)
    words = rng.choice(np.array(["ant", "bee", "cat", "dog", "eel", "fox"]), rows)
    days = rng.integers(0, 3650, rows)
    return pl.DataFrame(
        {
            "i": ints,
            "x": floats,
            "w": words,
            "d": [dt.date(2015, 1, 1) + dt.timedelta(days=int(n)) for n in days],
        }
    ).with_columns(pl.when(pl.lit(rng.random(rows) < 0.15)).then(None).otherwise(pl.all()).name.keep())


def one_row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    row = con.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_profile_agrees_with_duckdb(seed: int) -> None:
    frame = random_frame(seed)
    profile = {row["column"]: row for row in profile_columns(frame.lazy(), "s").iter_rows(named=True)}
    con = duckdb.connect()
    con.register("t", frame.to_arrow())
    for name in ("i", "x", "w", "d"):
        count, non_null, distinct, low, high = one_row(
            con, f"select count(*), count({name}), count(distinct {name}), min({name}), max({name}) from t"
        )
        row = profile[name]
        assert (row["row_count"], row["null_count"], row["distinct_count"]) == (
            count,
            count - non_null,
            distinct,
        )
        rendered = low.isoformat() if isinstance(low, dt.date) else str(low)
        assert row["min_text"] == rendered
        assert row["max_text"] == (high.isoformat() if isinstance(high, dt.date) else str(high))
    for name in ("i", "x"):
        mean, std, p25, p50, p75 = one_row(
            con,
            f"select avg({name}), stddev_samp({name}), quantile_cont({name}, 0.25), "
            f"quantile_cont({name}, 0.5), quantile_cont({name}, 0.75) from t",
        )
        row = profile[name]
        for ours, theirs in ((row["mean"], mean), (row["std"], std), (row["p25"], p25), (row["p50"], p50)):
            assert ours == pytest.approx(theirs, rel=1e-9)
        assert row["p75"] == pytest.approx(p75, rel=1e-9)
