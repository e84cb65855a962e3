"""Test datasets for the backend suite: the generated sample, a hand-made edge-case set and a
calendar (one row per day across year boundaries), each with its variant of the retail AC.

The edge and calendar sets prefix their table names (``edge_``, ``cal_``) so that every dataset can
live in the same PostgreSQL test database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import polars as pl

from metric_platform.backends.sql_load import load_frames
from metric_platform.sample_data import SampleSpec, generate, write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext, FilterCondition, FilterOp

RETAIL_AC = Path(__file__).resolve().parents[2] / "data" / "acs" / "retail.yaml"
SAMPLE_SPEC = SampleSpec(rows=3000, days=40, end_date=dt.date(2026, 11, 20))
SQLITE_FILE = "source.db"

TRANSACTIONS = pl.Schema(
    {
        "txn_id": pl.Int64(),
        "tenant_id": pl.String(),
        "project_id": pl.String(),
        "event_date": pl.Date(),
        "store_id": pl.String(),
        "campaign_id": pl.String(),
        "customer_id": pl.String(),
        "revenue": pl.Float64(),
        "spend": pl.Float64(),
        "conversions": pl.Int64(),
        "is_returned": pl.Boolean(),
        "updated_at": pl.Datetime("us"),
    }
)
STORES = pl.Schema(
    {"store_id": pl.String(), "store_name": pl.String(), "region": pl.String(), "opened_on": pl.Date()}
)
CAMPAIGNS = pl.Schema({"campaign_id": pl.String(), "campaign_name": pl.String(), "channel": pl.String()})


@dataclass(frozen=True)
class Dataset:
    name: str
    ac: AnalyticalContext
    frames: dict[str, pl.DataFrame]  # keyed by table name, logical column names
    directory: Path  # <table>.parquet files and the SQLite file
    stored: dict[str, pl.DataFrame]  # what was written: physical column names

    @property
    def sqlite_url(self) -> str:
        return f"sqlite:///{self.directory / SQLITE_FILE}"


def materialise(
    name: str,
    frames: dict[str, pl.DataFrame],
    directory: Path,
    *,
    prefix: str = "",
    extra_filter: tuple[FilterCondition, ...] = (),
    name_maps: Mapping[str, Mapping[str, str]] | None = None,
) -> Dataset:
    """Write ``frames`` (keyed by the retail tables) as Parquet and SQLite under ``directory``.

    ``name_maps`` (schema -> logical column -> physical column) renames stored columns and sets the
    AC's ``name_map``; ``Dataset.frames`` keeps the logical names (what the oracle reads).
    """
    maps = name_maps or {}
    ac = load_ac(RETAIL_AC, source_path=directory)
    schemas = {
        n: replace(s, table=prefix + s.table, name_map=dict(maps.get(n, {}))) for n, s in ac.schemas.items()
    }
    ac = replace(ac, schemas=schemas, filter=ac.filter + extra_filter)
    tables = {prefix + table: frame for table, frame in frames.items()}
    stored = {prefix + table: frame.rename(dict(maps.get(table, {}))) for table, frame in frames.items()}
    write_parquet(stored, directory)
    load_frames(f"sqlite:///{directory / SQLITE_FILE}", stored)
    return Dataset(name, ac, tables, directory, stored)


def sample_frames() -> dict[str, pl.DataFrame]:
    return generate(SAMPLE_SPEC)


# -- the hand-made edge cases (expected values in test_edge_cases.py are computed from these rows) --
D = dt.date
HIDDEN_STORE = FilterCondition("stores", "store_name", FilterOp.NE, "Hidden")


class Sale(NamedTuple):
    txn_id: int
    day: dt.date
    store: str
    campaign: str | None
    customer: str | None
    revenue: float | None
    conversions: int | None
    returned: bool | None
    tenant: str = "acme"


def _transactions(sales: list[Sale]) -> pl.DataFrame:
    rows = [
        {
            "txn_id": s.txn_id,
            "tenant_id": s.tenant,
            "project_id": "p",
            "event_date": s.day,
            "store_id": s.store,
            "campaign_id": s.campaign,
            "customer_id": s.customer,
            "revenue": s.revenue,
            "spend": 1.0,
            "conversions": s.conversions,
            "is_returned": s.returned,
            "updated_at": dt.datetime.combine(s.day, dt.time(9, 30)),
        }
        for s in sales
    ]
    return pl.DataFrame(rows, schema=TRANSACTIONS)


def edge_frames() -> dict[str, pl.DataFrame]:
    rows = [
        Sale(1, D(2026, 3, 2), "S1", "C1", "a", 10.0, 1, False),
        Sale(2, D(2026, 3, 2), "S1", "C1", "B", 20.0, 3, False),
        Sale(11, D(2026, 3, 2), "S1", "C1", "a", 30.0, None, False),
        # (S2, 3 Mar): every value NULL
        Sale(3, D(2026, 3, 3), "S2", "C2", "a", None, None, None),
        Sale(4, D(2026, 3, 3), "S2", "C2", None, None, None, None),
        # (S1, 8 Mar, a Sunday): one NULL revenue; one row without a campaign
        Sale(5, D(2026, 3, 8), "S1", None, "c", 5.0, 2, True),
        Sale(6, D(2026, 3, 8), "S1", "C2", "c", None, 4, False),
        # S4 has no store row; S3's row is removed by the AC filter: both get a NULL region
        Sale(7, D(2026, 3, 9), "S4", "C1", "d", 7.0, 0, True),
        Sale(8, D(2026, 3, 9), "S3", "C1", "a", 3.0, 1, False),
        Sale(9, D(2026, 4, 1), "S2", "C1", "B", 40.0, 6, True),
        # another tenant: removed by the AC filter everywhere
        Sale(10, D(2026, 3, 2), "S1", "C1", "z", 1000.0, 100, True, tenant="other"),
    ]
    stores = [
        ("S1", "One", "north", D(2020, 1, 1)),
        ("S2", "Two", "south", D(2020, 1, 1)),
        ("S3", "Hidden", "north", D(2020, 1, 1)),
        ("S9", "Dormant", "east", D(2027, 1, 1)),
    ]
    campaigns = [("C1", "First", "search"), ("C2", "Second", "social")]
    return {
        "transactions": _transactions(rows),
        "stores": pl.DataFrame(stores, schema=STORES, orient="row"),
        "campaigns": pl.DataFrame(campaigns, schema=CAMPAIGNS, orient="row"),
    }


NAN = float("nan")
# txn_id -> revenue: NaN beside numbers (S1, 2 Mar), beside a NULL (S2, 3 Mar), alone (the NULL region)
NAN_REVENUE = {2: NAN, 3: NAN, 7: NAN, 8: NAN}


def nan_frames() -> dict[str, pl.DataFrame]:
    """The edge cases with some revenues NaN (see NAN_REVENUE)."""
    frames = edge_frames()
    txns = frames["transactions"]
    revenue = [NAN_REVENUE.get(i, r) for i, r in zip(txns["txn_id"], txns["revenue"], strict=True)]
    frames["transactions"] = txns.with_columns(pl.Series("revenue", revenue, dtype=pl.Float64))
    return frames


def without_nan(frames: Mapping[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """What SQLite holds after storing ``frames``: it has no NaN, a NaN is stored as NULL."""
    floats = pl.col(pl.Float32, pl.Float64)
    return {name: frame.with_columns(floats.fill_nan(None)) for name, frame in frames.items()}


CALENDAR_START, CALENDAR_END = D(2023, 12, 20), D(2025, 1, 10)


def day_from_timestamp(dataset: Dataset) -> Dataset:
    """The dataset with its day dimension bound to the ``updated_at`` timestamp instead of a date."""
    dimensions = dict(dataset.ac.dimensions)
    dimensions["day"] = replace(dimensions["day"], columns={"transactions": "updated_at"})
    return replace(dataset, name=f"{dataset.name}_ts", ac=replace(dataset.ac, dimensions=dimensions))


def calendar_frames() -> dict[str, pl.DataFrame]:
    """One transaction per day, so a COUNT per bucket is the number of days in it."""
    days = pl.date_range(CALENDAR_START, CALENDAR_END, eager=True)
    rows = [Sale(i + 1, day, "S1", "C1", "a", 1.0, 1, False) for i, day in enumerate(days)]
    # the last microsecond of the event day: a day taken from updated_at must not drift
    last_moment = pl.col("event_date").cast(pl.Datetime("us")) + pl.duration(days=1, microseconds=-1)
    return {
        "transactions": _transactions(rows).with_columns(last_moment.alias("updated_at")),
        "stores": pl.DataFrame([("S1", "One", "north", D(2020, 1, 1))], schema=STORES, orient="row"),
        "campaigns": pl.DataFrame([("C1", "First", "search")], schema=CAMPAIGNS, orient="row"),
    }
