"""Deterministic sample data: a tenant's retail/ads model (one fact, two dimensions).

The tables and columns are fixed because the sample ACs (``data/acs/*.yaml``) name them; the tenant
and project are not: each sample carries its own in every fact row and in ``sample.json``, so two
tenants' samples (``data/sample/`` for ``acme``, ``data/sample_globex/`` for ``globex``) are two
sources that an AC's tenant filter tells apart. Generation is vectorized numpy + Polars driven by
one ``numpy.random.default_rng(seed)``, so one spec always gives byte-identical frames (and Parquet
files), and 10M rows take seconds rather than minutes.

``transactions``: one row per sale; daily volume follows a weekly pattern and a few big stores take
most of the rows; ~10% of rows are updated 1-5 days after their event day (the late updates the
stability cutoff exists for), never later than the day after ``end_date``.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from metric_platform.errors import InvalidRequestError, SourceError, StorageError

# Bump whenever the output for a given spec changes, so a committed sample can be told apart.
GENERATOR_VERSION = 1
METADATA_FILE = "sample.json"
TENANT_ID = "acme"
PROJECT_ID = "5f0c6a43-8f5e-4c1b-9a7e-2d4b1c9e7a10"
TABLES = ("transactions", "stores", "campaigns")
REGIONS = ("north", "south", "east", "west", "central")
CHANNELS = ("search", "social", "display", "email", "affiliate")

# Monday..Sunday volume multipliers: retail peaks on Friday and Saturday.
_WEEKDAY_WEIGHTS = np.array([0.85, 0.80, 0.85, 0.95, 1.15, 1.35, 1.05])
# Town names for stores: 8 x 5 unique combinations ("Riverside", "Oakgate", ...) before numbering.
_TOWN_STEMS = ("River", "Lake", "Hill", "Oak", "Fair", "Brook", "West", "North")
_TOWN_ENDS = ("side", "view", "field", "gate", "wood")
_THEMES = ("Spring Sale", "Back to School", "Holiday", "Clearance", "New Arrivals", "Loyalty")
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR
_EPOCH = date(1970, 1, 1)
_Floats = npt.NDArray[np.float64]
_CHUNK_ROWS = 1_000_000
_NULL_FRACTIONS = {"revenue": 0.03, "spend": 0.02, "conversions": 0.02, "is_returned": 0.01}


@dataclass(frozen=True)
class SampleSpec:
    """What to generate; ``end_date=None`` means yesterday relative to the caller's ``today``."""

    rows: int = 20_000
    end_date: date | None = None
    days: int = 90
    stores: int = 24
    campaigns: int = 12
    seed: int = 7
    tenant_id: str = TENANT_ID
    project_id: str = PROJECT_ID

    def __post_init__(self) -> None:
        for name in ("rows", "days", "stores", "campaigns"):
            value = getattr(self, name)
            if value < 1:
                msg = f"SampleSpec.{name} must be at least 1, got {value}"
                raise InvalidRequestError(msg)
        for name in ("tenant_id", "project_id"):
            if not getattr(self, name).strip():
                msg = f"SampleSpec.{name} is empty; name the tenant and project the sample belongs to"
                raise InvalidRequestError(msg)


# The sample committed under data/sample/ (small enough for git; data/acs/retail.yaml reads it).
COMMITTED_SPEC = SampleSpec(rows=4_000, days=60, end_date=date(2026, 11, 20))
# The second tenant's sample, data/sample_globex/ (data/acs/outlets.yaml reads it): another seed,
# tenant and project, and a smaller chain, so nothing about it coincides with acme's by accident.
GLOBEX_COMMITTED_SPEC = SampleSpec(
    rows=3_000,
    days=60,
    end_date=date(2026, 11, 20),
    stores=10,
    campaigns=8,
    seed=1_031,
    tenant_id="globex",
    project_id="f1d12d35-bda3-4db6-b43e-d6e7fce71018",
)
# Every committed sample by its directory under data/: how to regenerate each one exactly.
COMMITTED_SAMPLES: Mapping[str, SampleSpec] = {
    "sample": COMMITTED_SPEC,
    "sample_globex": GLOBEX_COMMITTED_SPEC,
}


def resolve_end_date(spec: SampleSpec, *, today: date | None = None) -> date:
    """The last event day: ``spec.end_date``, else the day before ``today`` (default: the real today)."""
    if spec.end_date is not None:
        return spec.end_date
    return (today or date.today()) - timedelta(days=1)


def generate(spec: SampleSpec, *, today: date | None = None) -> dict[str, pl.DataFrame]:
    """The three tables, keyed by table name; the same spec (and end date) gives identical frames."""
    end = resolve_end_date(spec, today=today)
    start = end - timedelta(days=spec.days - 1)
    # Dimensions draw first, so the dimension tables do not depend on ``rows``.
    rng = np.random.default_rng(spec.seed)
    stores, store_p = _stores(rng, spec.stores, start, end, brand=spec.tenant_id.title())
    campaigns, campaign_p = _campaigns(rng, spec.campaigns)
    transactions = _transactions(
        rng, spec, start, stores=stores, store_p=store_p, campaigns=campaigns, campaign_p=campaign_p
    )
    return {"transactions": transactions, "stores": stores, "campaigns": campaigns}


def _ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(1, count + 1)]


def _dormant(weights: _Floats) -> _Floats:
    # The last member gets no facts (a store not yet open, a campaign not yet launched): real
    # dimensions have rows that no fact references, and joins must cope with that.
    if len(weights) >= 3:
        weights[-1] = 0.0
    normalized: _Floats = weights / weights.sum()
    return normalized


def _town(i: int) -> str:
    stems, ends = len(_TOWN_STEMS), len(_TOWN_ENDS)
    name = _TOWN_STEMS[i % stems] + _TOWN_ENDS[i // stems % ends]
    return name if i < stems * ends else f"{name} {i // (stems * ends) + 1}"


def _stores(
    rng: np.random.Generator, count: int, start: date, end: date, *, brand: str
) -> tuple[pl.DataFrame, _Floats]:
    # Round-robin then shuffle: every region has stores, and store -> region is a true FD.
    regions = rng.permutation(np.arange(count) % len(REGIONS))
    # Zipf-like sizes, shuffled so the big stores are not simply the first ids.
    weights = _dormant(rng.permutation(1.0 / np.arange(1, count + 1) ** 0.9))
    oldest = date(2012, 1, 1)
    opened = rng.integers(0, max(1, (start - oldest).days - 30), size=count)
    opened_on = [oldest + timedelta(days=int(d)) for d in opened]
    if count >= 3:
        opened_on[-1] = end + timedelta(days=14)
    names = [f"{brand} {_town(i)}" for i in range(count)]
    frame = pl.DataFrame(
        {
            "store_id": _ids("S", count),
            "store_name": names,
            "region": [REGIONS[r] for r in regions],
            "opened_on": opened_on,
        },
        schema={"store_id": pl.String, "store_name": pl.String, "region": pl.String, "opened_on": pl.Date},
    )
    return frame, weights


def _campaigns(rng: np.random.Generator, count: int) -> tuple[pl.DataFrame, _Floats]:
    channels = rng.permutation(np.arange(count) % len(CHANNELS))
    weights = _dormant(rng.gamma(2.0, size=count))
    names = [f"{_THEMES[i % len(_THEMES)]} {CHANNELS[c].title()} {i + 1:02d}" for i, c in enumerate(channels)]
    frame = pl.DataFrame(
        {"campaign_id": _ids("C", count), "campaign_name": names, "channel": [CHANNELS[c] for c in channels]},
        schema={"campaign_id": pl.String, "campaign_name": pl.String, "channel": pl.String},
    )
    return frame, weights


def _transactions(
    rng: np.random.Generator,
    spec: SampleSpec,
    start: date,
    *,
    stores: pl.DataFrame,
    store_p: _Floats,
    campaigns: pl.DataFrame,
    campaign_p: _Floats,
) -> pl.DataFrame:
    # Daily volume: weekday pattern x slow growth x day-to-day noise; rows are sorted by day.
    day = np.arange(spec.days)
    weekday = (start.weekday() + day) % 7
    day_w = _WEEKDAY_WEIGHTS[weekday] * (1.0 + 0.003 * day) * rng.normal(1.0, 0.06, size=spec.days).clip(0.5)
    day_idx = np.repeat(day, rng.multinomial(spec.rows, day_w / day_w.sum())).astype(np.int32)
    ctx = _FactContext(
        start_day=(start - _EPOCH).days,
        days=spec.days,
        customers=max(50, spec.rows // 5),
        store_ids=stores["store_id"],
        store_p=store_p,
        campaign_ids=campaigns["campaign_id"],
        campaign_p=campaign_p,
        tenant_id=spec.tenant_id,
        project_id=spec.project_id,
    )
    # Chunks bound the numpy temporaries, so peak memory stays near the size of the result.
    chunks = [
        _fact_chunk(rng, ctx, first, day_idx[first : first + _CHUNK_ROWS])
        for first in range(0, spec.rows, _CHUNK_ROWS)
    ]
    return pl.concat(chunks, rechunk=False) if len(chunks) > 1 else chunks[0]


@dataclass(frozen=True)
class _FactContext:
    start_day: int
    days: int
    customers: int
    store_ids: pl.Series
    store_p: _Floats
    campaign_ids: pl.Series
    campaign_p: _Floats
    tenant_id: str
    project_id: str


def _fact_chunk(
    rng: np.random.Generator, ctx: _FactContext, first: int, day_idx: npt.NDArray[np.int32]
) -> pl.DataFrame:
    n = len(day_idx)
    store_idx = rng.choice(len(ctx.store_p), size=n, p=ctx.store_p)
    campaign_idx = rng.choice(len(ctx.campaign_p), size=n, p=ctx.campaign_p)
    organic = rng.random(n) < 0.05
    # Loyal customers buy more often: skew the draw towards low customer numbers.
    customer = (ctx.customers * rng.random(n) ** 1.5).astype(np.int64) + 1
    revenue = np.round(rng.lognormal(3.3, 0.8, size=n), 2)
    spend = np.where(organic, 0.0, np.round(rng.lognormal(0.2, 0.9, size=n), 2))
    conversions = rng.poisson(0.8, size=n).astype(np.int64)
    returned = rng.random(n) < 0.05
    # Usually updated a few hours into the event day; late rows 1-5 days later, capped at the day
    # after the end date (nothing can be updated after the extract).
    late = rng.random(n) < 0.10
    lag = np.minimum(rng.integers(1, 6, size=n), ctx.days - day_idx)
    offset = np.where(
        late,
        lag * _US_PER_DAY + rng.integers(0, _US_PER_DAY, size=n),
        rng.integers(_US_PER_HOUR, 10 * _US_PER_HOUR, size=n),
    )
    raw = pl.DataFrame(
        {
            "txn_id": np.arange(first + 1, first + n + 1, dtype=np.int64),
            "day": ctx.start_day + day_idx,
            "store": store_idx,
            "campaign": campaign_idx,
            "customer": customer,
            "revenue": revenue,
            "spend": spend,
            "conversions": conversions,
            "is_returned": returned,
            "updated_at": (ctx.start_day + day_idx.astype(np.int64)) * _US_PER_DAY + offset,
            "organic": organic,
            # Null masks, drawn last so the values above do not depend on the null fractions.
            **{f"null_{c}": rng.random(n) < p for c, p in _NULL_FRACTIONS.items()},
        }
    )

    def nullable(name: str) -> pl.Expr:
        return pl.when(pl.col(f"null_{name}")).then(None).otherwise(pl.col(name)).alias(name)

    return raw.select(
        pl.col("txn_id"),
        pl.lit(ctx.tenant_id, dtype=pl.String).alias("tenant_id"),
        pl.lit(ctx.project_id, dtype=pl.String).alias("project_id"),
        pl.col("day").cast(pl.Date).alias("event_date"),
        pl.lit(ctx.store_ids).gather(pl.col("store")).alias("store_id"),
        pl.when(pl.col("organic"))
        .then(None)
        .otherwise(pl.lit(ctx.campaign_ids).gather(pl.col("campaign")))
        .alias("campaign_id"),
        pl.format("CU{}", pl.col("customer").cast(pl.String).str.zfill(6)).alias("customer_id"),
        *(nullable(name) for name in _NULL_FRACTIONS),
        pl.col("updated_at").cast(pl.Datetime("us")),
    )


def write_parquet(frames: Mapping[str, pl.DataFrame], directory: Path) -> list[Path]:
    """Write one ``<table>.parquet`` per frame; each file appears whole or not at all."""
    paths = []
    for table, frame in frames.items():
        path = directory / f"{table}.parquet"
        _atomic_write(path, functools.partial(frame.write_parquet, compression="zstd"))
        paths.append(path)
    return paths


def sample_metadata(spec: SampleSpec, *, today: date | None = None) -> dict[str, Any]:
    """What ``sample.json`` holds for ``spec``: enough to regenerate the sample and to check it."""
    end = resolve_end_date(spec, today=today)
    rows = {"transactions": spec.rows, "stores": spec.stores, "campaigns": spec.campaigns}
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": spec.seed,
        "rows": spec.rows,
        "days": spec.days,
        "start_date": (end - timedelta(days=spec.days - 1)).isoformat(),
        "end_date": end.isoformat(),
        "stores": spec.stores,
        "campaigns": spec.campaigns,
        "tenant_id": spec.tenant_id,
        "project_id": spec.project_id,
        "tables": {table: {"file": f"{table}.parquet", "rows": rows[table]} for table in TABLES},
    }


def write_metadata(spec: SampleSpec, directory: Path, *, today: date | None = None) -> dict[str, Any]:
    """Write ``sample.json`` (atomically) and return what was written."""
    metadata = sample_metadata(spec, today=today)
    text = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
    _atomic_write(directory / METADATA_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return metadata


def read_metadata(directory: Path) -> dict[str, Any] | None:
    """The parsed ``sample.json`` in ``directory``, or None when there is none."""
    path = directory / METADATA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        msg = f"cannot read sample metadata {path}: {exc}; delete {directory} to regenerate the sample"
        raise SourceError(msg) from exc
    if not isinstance(data, dict):
        msg = f"sample metadata {path} is not a JSON object; delete {directory} to regenerate the sample"
        raise SourceError(msg)
    return data


def ensure_sample(
    directory: Path, spec: SampleSpec, *, today: date | None = None
) -> tuple[bool, dict[str, Any]]:
    """Generate and write the sample unless it is already complete; True when it was written.

    An existing complete sample is left alone even if it came from another spec: the returned
    metadata says what is there. ``sample.json`` is written last, so it marks a complete sample and
    an interrupted run is simply redone; concurrent runs write identical bytes.
    """
    existing = complete_sample(directory)
    if existing is not None:
        return False, existing
    write_parquet(generate(spec, today=today), directory)
    return True, write_metadata(spec, directory, today=today)


def complete_sample(directory: Path) -> dict[str, Any] | None:
    """The metadata of the complete sample in ``directory`` (``sample.json`` and every table), or
    None when there is none or it was interrupted."""
    existing = read_metadata(directory)
    if existing is not None and all((directory / f"{table}.parquet").is_file() for table in TABLES):
        return existing
    return None


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    # A unique temp name in the same directory, then os.replace: readers see the old file or the
    # new one, and concurrent writers never share a temp file. (Not mkstemp: its 0600 mode would
    # stick to the published file.)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(str(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        msg = f"cannot write {path}: {exc}; check that the directory is writable and has free space"
        raise StorageError(msg) from exc
    finally:
        tmp.unlink(missing_ok=True)
