"""The sample generator: determinism, shape, realism properties the ACs rely on, and the files."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from metric_platform import sample_data
from metric_platform.errors import InvalidRequestError, SourceError
from metric_platform.sample_data import (
    CHANNELS,
    COMMITTED_SPEC,
    PROJECT_ID,
    REGIONS,
    TABLES,
    SampleSpec,
    ensure_sample,
    generate,
    read_metadata,
    sample_metadata,
    write_metadata,
    write_parquet,
)

COMMITTED_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
SPEC = SampleSpec(rows=20_000, end_date=date(2026, 3, 31))


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    return generate(SPEC)


@pytest.fixture(scope="module")
def facts(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return frames["transactions"]


def test_same_spec_gives_identical_frames_and_parquet_bytes(tmp_path: Path) -> None:
    first, second = generate(SPEC), generate(SPEC)
    assert all(first[t].equals(second[t], null_equal=True) for t in TABLES)
    paths_a = write_parquet(first, tmp_path / "a")
    paths_b = write_parquet(second, tmp_path / "b")
    assert [p.read_bytes() for p in paths_a] == [p.read_bytes() for p in paths_b]


def test_another_seed_gives_other_data(facts: pl.DataFrame) -> None:
    other = generate(SampleSpec(rows=SPEC.rows, end_date=SPEC.end_date, seed=SPEC.seed + 1))["transactions"]
    assert other.height == facts.height
    assert not other.equals(facts)
    assert other["revenue"].sum() != facts["revenue"].sum()


def test_schema_and_row_counts(frames: dict[str, pl.DataFrame]) -> None:
    assert dict(frames["transactions"].schema) == {
        "txn_id": pl.Int64,
        "tenant_id": pl.String,
        "project_id": pl.String,
        "event_date": pl.Date,
        "store_id": pl.String,
        "campaign_id": pl.String,
        "customer_id": pl.String,
        "revenue": pl.Float64,
        "spend": pl.Float64,
        "conversions": pl.Int64,
        "is_returned": pl.Boolean,
        "updated_at": pl.Datetime("us"),
    }
    assert dict(frames["stores"].schema) == {
        "store_id": pl.String,
        "store_name": pl.String,
        "region": pl.String,
        "opened_on": pl.Date,
    }
    assert dict(frames["campaigns"].schema) == {
        "campaign_id": pl.String,
        "campaign_name": pl.String,
        "channel": pl.String,
    }
    assert [frames[t].height for t in TABLES] == [SPEC.rows, SPEC.stores, SPEC.campaigns]


def test_identifiers_and_values(frames: dict[str, pl.DataFrame], facts: pl.DataFrame) -> None:
    assert facts["txn_id"].to_list() == list(range(1, SPEC.rows + 1))
    assert facts["tenant_id"].unique().to_list() == ["acme"]
    assert facts["project_id"].unique().to_list() == [PROJECT_ID]
    assert frames["stores"]["store_id"].to_list() == [f"S{i:03d}" for i in range(1, SPEC.stores + 1)]
    assert frames["campaigns"]["campaign_id"].to_list() == [f"C{i:03d}" for i in range(1, SPEC.campaigns + 1)]
    assert frames["stores"]["store_name"].n_unique() == SPEC.stores
    assert facts["customer_id"].str.contains(r"^CU\d{6}$").all()
    assert facts["customer_id"].n_unique() > SPEC.rows // 10  # high cardinality
    for column in ("revenue", "spend", "conversions"):
        assert facts[column].min() >= 0  # type: ignore[operator]
    assert (facts["revenue"] == facts["revenue"].round(2)).all()  # two decimals
    start = SPEC.end_date - timedelta(days=SPEC.days - 1)  # type: ignore[operator]
    assert facts["event_date"].min() == start
    assert facts["event_date"].max() == SPEC.end_date
    assert facts["event_date"].n_unique() == SPEC.days
    assert facts["event_date"].is_sorted()


@pytest.mark.parametrize(
    ("column", "expected"),
    [("campaign_id", 0.05), ("revenue", 0.03), ("spend", 0.02), ("conversions", 0.02), ("is_returned", 0.01)],
)
def test_null_fractions(facts: pl.DataFrame, column: str, expected: float) -> None:
    # 20k rows: one binomial standard deviation is at most 0.0016, so 0.006 is ~4 sigma.
    assert abs(facts[column].null_count() / facts.height - expected) < 0.006


def test_returns_are_rare(facts: pl.DataFrame) -> None:
    returned = facts["is_returned"].drop_nulls()
    assert abs(returned.mean() - 0.05) < 0.008  # type: ignore[operator]


def test_store_to_region_is_a_functional_dependency(frames: dict[str, pl.DataFrame]) -> None:
    stores = frames["stores"]
    assert stores["store_id"].is_unique().all()
    joined = frames["transactions"].join(stores, on="store_id", how="left")
    assert joined.group_by("store_id").agg(pl.col("region").n_unique()).get_column("region").max() == 1
    assert set(stores["region"]) == set(REGIONS)
    assert set(frames["campaigns"]["channel"]) == set(CHANNELS)


def test_every_fact_key_exists_in_its_dimension(frames: dict[str, pl.DataFrame], facts: pl.DataFrame) -> None:
    for dimension, key in (("stores", "store_id"), ("campaigns", "campaign_id")):
        used = set(facts[key].drop_nulls())
        known = set(frames[dimension][key])
        assert used <= known
        assert known - used, f"expected a {dimension} row without facts"


def test_volume_has_a_weekly_pattern_and_big_stores(facts: pl.DataFrame) -> None:
    per_weekday = facts.group_by(pl.col("event_date").dt.weekday()).len().sort("event_date")["len"]
    assert per_weekday[5] > 1.4 * per_weekday[1]  # Saturday vs Tuesday
    per_store = facts.group_by("store_id").len()["len"]
    assert per_store.max() > 4 * per_store.median()  # type: ignore[operator]


def test_updates_follow_events_and_some_are_late(facts: pl.DataFrame) -> None:
    end = SPEC.end_date
    assert end is not None
    event_start = facts["event_date"].cast(pl.Datetime("us"))
    lag = facts["updated_at"] - event_start
    assert (lag >= timedelta(0)).all()
    assert (facts["updated_at"] < datetime.combine(end + timedelta(days=2), datetime.min.time())).all()
    late = (lag >= timedelta(days=1)).mean()
    assert 0.08 < late < 0.12  # type: ignore[operator]
    assert (lag >= timedelta(days=5)).any()
    # The last event day's late updates land on the day after the end date, not later.
    last_day = facts.filter(pl.col("event_date") == end)
    assert (last_day["updated_at"].dt.date() == end + timedelta(days=1)).any()


def test_end_date_defaults_to_the_day_before_today() -> None:
    spec = SampleSpec(rows=500, days=10)
    facts = generate(spec, today=date(2030, 5, 1))["transactions"]
    assert facts["event_date"].max() == date(2030, 4, 30)
    assert facts["event_date"].min() == date(2030, 4, 21)
    assert sample_metadata(spec, today=date(2030, 5, 1))["end_date"] == "2030-04-30"


def test_chunks_join_seamlessly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_data, "_CHUNK_ROWS", 700)
    facts = generate(SampleSpec(rows=5_000, days=30, end_date=date(2026, 1, 31)))["transactions"]
    assert facts["txn_id"].to_list() == list(range(1, 5_001))
    assert facts["event_date"].is_sorted()
    assert facts.n_chunks() > 1


@pytest.mark.parametrize("field", ["rows", "days", "stores", "campaigns"])
def test_invalid_spec_is_rejected(field: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"SampleSpec.{field}"):
        SampleSpec(**{field: 0})  # type: ignore[arg-type]


def test_parquet_and_metadata_round_trip(tmp_path: Path, frames: dict[str, pl.DataFrame]) -> None:
    paths = write_parquet(frames, tmp_path)
    assert [p.name for p in paths] == [f"{t}.parquet" for t in TABLES]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp files
    for table in TABLES:
        assert pl.read_parquet(tmp_path / f"{table}.parquet").equals(frames[table], null_equal=True)
    assert read_metadata(tmp_path) is None
    written = write_metadata(SPEC, tmp_path)
    assert read_metadata(tmp_path) == written
    assert written["tables"] == {t: {"file": f"{t}.parquet", "rows": frames[t].height} for t in TABLES}
    assert (written["end_date"], written["seed"], written["generator_version"]) == ("2026-03-31", 7, 1)


def test_corrupt_metadata_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "sample.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SourceError, match="delete"):
        read_metadata(tmp_path)


def test_ensure_sample_writes_once(tmp_path: Path) -> None:
    spec = SampleSpec(rows=300, days=5, end_date=date(2026, 1, 5))
    written, metadata = ensure_sample(tmp_path / "sample", spec)
    assert written
    assert metadata == read_metadata(tmp_path / "sample")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "sample").iterdir()}
    written, again = ensure_sample(tmp_path / "sample", SampleSpec(rows=999))
    assert not written
    assert again == metadata  # an existing sample is kept, whatever the spec
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "sample").iterdir()} == before


def test_ensure_sample_redoes_an_incomplete_sample(tmp_path: Path) -> None:
    spec = SampleSpec(rows=300, days=5, end_date=date(2026, 1, 5))
    ensure_sample(tmp_path, spec)
    (tmp_path / "stores.parquet").unlink()
    written, _ = ensure_sample(tmp_path, spec)
    assert written
    assert pl.read_parquet(tmp_path / "stores.parquet").height == spec.stores


def test_committed_sample_is_what_the_generator_makes(tmp_path: Path) -> None:
    # Fails when the generator changes without regenerating data/sample/ (and bumping the version).
    expected = generate(COMMITTED_SPEC)
    for table in TABLES:
        committed = pl.read_parquet(COMMITTED_DIR / f"{table}.parquet")
        assert committed.equals(expected[table], null_equal=True), table
    assert read_metadata(COMMITTED_DIR) == json.loads(json.dumps(sample_metadata(COMMITTED_SPEC)))
    assert sum(p.stat().st_size for p in COMMITTED_DIR.iterdir()) < 300_000
    digest = hashlib.sha256((COMMITTED_DIR / "transactions.parquet").read_bytes()).hexdigest()
    written = write_parquet(expected, tmp_path)
    assert hashlib.sha256(written[0].read_bytes()).hexdigest() == digest


@pytest.mark.benchmark
def test_one_million_rows_is_fast() -> None:
    started = time.perf_counter()
    facts = generate(SampleSpec(rows=1_000_000))["transactions"]
    elapsed = time.perf_counter() - started
    assert facts.height == 1_000_000
    assert elapsed < 5.0, f"1M rows took {elapsed:.2f}s"
