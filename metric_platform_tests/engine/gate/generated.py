"""Generated facts and generated ACs for the rollup properties, and their hand-written DuckDB oracle.

A case is a small fact table (40 event days crossing the October/November boundary, a store key
with a store -> region dimension table, a campaign key, a numeric value and a boolean, both with
NULLs) written as Parquet, and an AC text around it with one metric family: an operator, the column
type it reduces, a missing-value treatment and a base grain. The oracle is SQL written here by hand
over the same Parquet files, with SQL's own null semantics: it shares nothing with the backends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
from hypothesis import strategies as st

from metric_platform.backends.protocol import DateWindow
from metric_platform.backends.sql_load import load_frames

FIRST_DAY = dt.date(2026, 10, 8)  # a Thursday; 40 days end on Monday 2026-11-16
DAYS = 40
# Every generated window lies inside the fine window, so the fine entry covers it.
FINE_WINDOW = DateWindow(dt.date(2026, 9, 28), dt.date(2026, 11, 30))
MONTHS_WINDOW = DateWindow(dt.date(2026, 10, 1), dt.date(2026, 11, 30))
STORES = ("s1", "s2", "s3", "s4", "s5")
ORPHAN_STORE = "s9"  # in the facts, not in the stores table: its region is NULL, as a LEFT JOIN gives
REGIONS = ("north", "south", "east")
FAMILY = "metric"

# operator -> the column types it may reduce in these cases
OPERATOR_COLUMNS: dict[str, tuple[str, ...]] = {
    "SUM": ("integer", "float"),
    "COUNT": ("integer", "float", "boolean"),
    "MIN": ("integer", "float"),
    "MAX": ("integer", "float"),
    "BOOL_AND": ("boolean",),
    "BOOL_OR": ("boolean",),
}
IMPUTE_VALUES: dict[str, object] = {"integer": 7, "float": 2.5, "boolean": True}
BASE_GRAINS: tuple[tuple[str, ...], ...] = (("store", "day"), ("region", "day"), ("day",))
# Coarse anchors, each served when the base grain determines it.
COARSE_ANCHORS: tuple[tuple[str, ...], ...] = (
    ("region", "month"),
    ("region",),
    ("month",),
    (),
    ("region", "week"),
    ("week",),
    ("region", "day"),
    ("region", "store"),  # redundant (store determines region) and not in declaration order
    ("store", "week"),
)
_DETERMINES = {"store": {"store", "region"}, "region": {"region"}, "day": {"day", "week", "month"}}
_SQL_DIMENSION = {
    "store": "f.store_id",
    "region": "s.region",
    "campaign": "f.campaign_id",
    "day": "f.event_date",
    "week": "CAST(date_trunc('week', f.event_date) AS DATE)",
    "month": "CAST(date_trunc('month', f.event_date) AS DATE)",
}


@dataclass(frozen=True)
class Case:
    facts: pl.DataFrame
    stores: pl.DataFrame
    operator: str
    column_type: str  # of the reduced column
    treatment: str  # skip | propagate | impute
    base_grain: tuple[str, ...]
    cache_hint: tuple[str, ...] | None
    source_kind: str = "parquet"  # or "sqlite": the same rows loaded into a SQLite file

    @property
    def column(self) -> str:
        return "flag" if self.column_type == "boolean" else "amount"

    def coarse_anchors(self) -> list[tuple[str, ...]]:
        reachable = set().union(*(_DETERMINES[d] for d in self.base_grain))
        return [a for a in COARSE_ANCHORS if set(a) <= reachable and a != self.base_grain]


def _value_strategy(column_type: str) -> st.SearchStrategy[object]:
    if column_type == "integer":
        return st.none() | st.integers(-40, 40)
    if column_type == "float":
        # Quarters add up exactly in binary, whatever the summation order of an engine.
        return st.none() | st.integers(-160, 160).map(lambda q: q / 4)
    return st.none() | st.booleans()


@st.composite
def cases(draw: st.DrawFn) -> Case:
    operator = draw(st.sampled_from(sorted(OPERATOR_COLUMNS)))
    column_type = draw(st.sampled_from(OPERATOR_COLUMNS[operator]))
    treatment = draw(st.sampled_from(("skip", "propagate", "impute")))
    base_grain = draw(st.sampled_from(BASE_GRAINS))
    n = draw(st.integers(2, 120))
    days = draw(st.lists(st.integers(0, DAYS - 1), min_size=n, max_size=n))
    stores = draw(st.lists(st.sampled_from((*STORES, ORPHAN_STORE, None)), min_size=n, max_size=n))
    campaigns = draw(st.lists(st.sampled_from(("c1", "c2", None)), min_size=n, max_size=n))
    values = draw(st.lists(_value_strategy(column_type), min_size=n, max_size=n))
    other_type = "float" if column_type == "boolean" else "boolean"
    others = draw(st.lists(_value_strategy(other_type), min_size=n, max_size=n))
    amounts, flags = (others, values) if column_type == "boolean" else (values, others)
    amount_dtype = pl.Int64 if column_type == "integer" else pl.Float64
    facts = pl.DataFrame(
        {
            "event_date": [FIRST_DAY + dt.timedelta(days=d) for d in days],
            "store_id": stores,
            "campaign_id": campaigns,
            "amount": amounts,
            "flag": flags,
        },
        schema={
            "event_date": pl.Date,
            "store_id": pl.String,
            "campaign_id": pl.String,
            "amount": amount_dtype,
            "flag": pl.Boolean,
        },
    )
    regions = draw(st.lists(st.sampled_from((*REGIONS, None)), min_size=len(STORES), max_size=len(STORES)))
    store_table = pl.DataFrame(
        {"store_id": list(STORES), "region": regions}, schema={"store_id": pl.String, "region": pl.String}
    )
    hint_options: list[tuple[str, ...] | None] = [None]
    hint_options.append(("month",) if base_grain == ("day",) else ("region", "month"))
    cache_hint = draw(st.sampled_from(hint_options))
    source_kind = draw(st.sampled_from(("parquet", "sqlite")))
    return Case(facts, store_table, operator, column_type, treatment, base_grain, cache_hint, source_kind)


@st.composite
def windows(draw: st.DrawFn, aligned_to: tuple[str, ...] = ()) -> DateWindow:
    """Inside FINE_WINDOW: the two whole months, a Monday-aligned run of weeks, or any range;
    only whole buckets of the time dimension of ``aligned_to``, if it has one."""
    kinds = ["months"] if "month" in aligned_to else ["weeks"] if "week" in aligned_to else []
    kind = draw(st.sampled_from(kinds or ["months", "weeks", "any"]))
    if kind == "months":
        return MONTHS_WINDOW
    span = (FINE_WINDOW.end - FINE_WINDOW.start).days
    if kind == "weeks":
        first = draw(st.integers(0, span // 7 - 1))
        last = draw(st.integers(first, span // 7 - 1))
        return DateWindow(
            FINE_WINDOW.start + dt.timedelta(weeks=first),
            FINE_WINDOW.start + dt.timedelta(weeks=last, days=6),
        )
    a, b = sorted(draw(st.lists(st.integers(0, span), min_size=2, max_size=2)))
    return DateWindow(FINE_WINDOW.start + dt.timedelta(days=a), FINE_WINDOW.start + dt.timedelta(days=b))


def write_case(case: Case, directory: Path) -> Path:
    """Write the Parquet files (the oracle reads them), the SQLite file for a SQLite case and the AC
    YAML into ``directory``; return the AC path."""
    case.facts.write_parquet(directory / "facts.parquet")
    case.stores.write_parquet(directory / "stores.parquet")
    source = f"{{kind: parquet, path: {directory}}}"
    if case.source_kind == "sqlite":
        database = directory / "gate.sqlite"
        load_frames(f"sqlite:///{database}", {"facts": case.facts, "stores": case.stores})
        source = f"{{kind: sqlite, path: {database}}}"
    treatment = case.treatment
    if treatment == "impute":
        value = IMPUTE_VALUES[case.column_type]
        treatment = "{impute: " + (str(value).lower() if isinstance(value, bool) else str(value)) + "}"
    amount_type = "float" if case.column_type == "boolean" else case.column_type
    hint = ""
    if case.cache_hint is not None:
        hint = f"\n    cache_hint:\n      materialize_at:\n        - [{', '.join(case.cache_hint)}]"
    text = f"""\
name: gate
tenant_id: gate
project_id: 0b0c6a43-8f5e-4c1b-9a7e-2d4b1c9e7a10
partitions: {{start_date: 2026-09-01, end_date: 2026-12-31}}
source: {source}
schemas:
  - name: facts
    table: facts
    columns: {{event_date: date, store_id: string, campaign_id: string, amount: {amount_type}, flag: boolean}}
  - name: stores
    table: stores
    columns: {{store_id: string, region: string}}
joins:
  - {{from: facts, to: stores, on: store}}
dimensions:
  - {{name: store, columns: {{facts: store_id, stores: store_id}}, block: geography}}
  - {{name: region, columns: {{stores: region}}, block: geography}}
  - {{name: campaign, columns: {{facts: campaign_id}}}}
  - {{name: day, time_grain: day, columns: {{facts: event_date}}}}
  - {{name: week, time_grain: week, derived_from: day}}
  - {{name: month, time_grain: month, derived_from: day}}
fd_edges:
  - [store, region]
  - [day, week]
  - [day, month]
metric_families:
  - name: {FAMILY}
    family_root: {{schema: facts, column: {case.column}}}
    ip_reducers:
      - {{operator: {case.operator}, a_block: [time, geography]}}
    missing_values: {treatment}
    base_grain: [{", ".join(case.base_grain)}]{hint}
"""
    path = directory / "gate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _sql_literal(value: object) -> str:
    return ("TRUE" if value else "FALSE") if isinstance(value, bool) else repr(value)


def oracle_sql(case: Case, directory: Path, anchor: tuple[str, ...], window: DateWindow) -> str:
    """The metric at ``anchor`` over ``window``, as SQL computes it from the raw rows."""
    x = f"f.{case.column}"
    agg = {"SUM": "sum", "COUNT": "count", "MIN": "min", "MAX": "max"}.get(
        case.operator, case.operator.lower()
    )
    if case.treatment == "impute":
        value = f"{agg}(coalesce({x}, {_sql_literal(IMPUTE_VALUES[case.column_type])}))"
    elif case.treatment == "propagate":
        value = f"CASE WHEN count({x}) < count(*) THEN NULL ELSE {agg}({x}) END"
    else:
        value = f"{agg}({x})"
    keys = [f'{_SQL_DIMENSION[d]} AS "{d}"' for d in anchor]
    query = (
        f"SELECT {', '.join([*keys, f'{value} AS {FAMILY}'])} "
        f"FROM read_parquet('{directory / 'facts.parquet'}') AS f "
        f"LEFT JOIN read_parquet('{directory / 'stores.parquet'}') AS s ON f.store_id = s.store_id "
        f"WHERE f.event_date BETWEEN DATE '{window.start}' AND DATE '{window.end}'"
    )
    if anchor:
        query += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(anchor)))
    return query


def oracle(
    case: Case, directory: Path, anchor: tuple[str, ...], window: DateWindow, schema: pl.Schema
) -> pl.DataFrame:
    """DuckDB's answer, cast to ``schema`` (the engine's dtypes: DuckDB sums integers to HUGEINT)."""
    with duckdb.connect() as con:
        out: pl.DataFrame = con.sql(oracle_sql(case, directory, anchor, window)).pl()
    return out.select(pl.col(name).cast(dtype) for name, dtype in schema.items())
