"""The ``metric-platform`` command, called in-process: output, exit codes and user-facing errors."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from metric_platform import cli
from metric_platform.sample_data import PROJECT_ID, TABLES, TENANT_ID
from metric_platform.semantics.loader import load_ac
from metric_platform_tests.cli.conftest import run
from metric_platform_tests.engine.conftest import RETAIL_YAML, SAMPLE_SPEC, write_ac_variant

TRANSACTION_COLUMNS = list(load_ac(RETAIL_YAML).schema("transactions").columns)


def test_validate_prints_every_family(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", RETAIL_YAML)
    assert (code, err) == (0, "")
    assert "ok — AC 'retail': 3 schemas, 10 dimensions" in out
    ac = load_ac(RETAIL_YAML)
    for family in ac.families.values():
        assert f"  {family.name}: {family.operator}(" in out
        assert f"fingerprint {family.fingerprint}" in out


def test_validate_reports_an_invalid_file_on_stderr_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_ac_variant(
        tmp_path,
        {"column: txn_id}": "column: txn}"},
        name="bad.yaml",
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n", encoding="utf-8")

    code, out, err = run(capsys, "validate", RETAIL_YAML, bad, broken)

    assert code == cli.EXIT_USER_ERROR
    assert "ok — AC 'retail'" in out, "the valid file is still reported"
    assert f"{bad}: invalid" in err and "'txn'" in err
    assert f"{broken}: invalid" in err and "invalid YAML" in err


def test_profile_prints_a_table_with_every_column(
    sample_dir: Path, capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    code, out, err = run(capsys, "profile", RETAIL_YAML, "transactions", "--source", sample_dir)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"transactions: 3000 rows, {len(TRANSACTION_COLUMNS)} columns"
    body = lines[3:]
    assert [line.split()[0] for line in body] == TRANSACTION_COLUMNS
    project = home / "engine" / TENANT_ID / PROJECT_ID  # the retail AC's project home
    assert (project / "manifest.sqlite").is_file(), "the engine store lives under the home"


def test_profile_json_parses(sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profile", RETAIL_YAML, "stores", "--source", sample_dir, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["schema_name"] == "stores" and data["row_count"] == SAMPLE_SPEC.stores
    assert [c["column"] for c in data["columns"]] == ["store_id", "store_name", "region", "opened_on"]


def test_profile_of_one_numeric_column_shows_a_histogram(
    sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "profile", RETAIL_YAML, "transactions", "--source", sample_dir, "--column", "revenue"
    )
    assert code == 0
    assert out.startswith("transactions.revenue: Float64")
    assert "top values: " in out
    histogram = next(line for line in out.splitlines() if line.strip().startswith("histogram: "))
    counts = [int(count) for count in re.findall(r"\): (\d+)", histogram)]
    assert len(counts) == 10
    revenue = pl.read_parquet(sample_dir / "transactions.parquet")["revenue"]
    assert sum(counts) == revenue.drop_nulls().len()


def test_profile_of_an_unknown_schema_exits_2_with_a_suggestion(
    sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "profile", RETAIL_YAML, "transaction", "--source", sample_dir)
    assert (code, out) == (cli.EXIT_USER_ERROR, "")
    assert err.startswith("error: unknown schema 'transaction'")
    assert "did you mean 'transactions'" in err


def test_entries_lists_what_a_profile_stored(sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "entries", RETAIL_YAML)
    assert (code, out.strip()) == (0, "AC 'retail': 0 entries, 0 bytes")
    run(capsys, "profile", RETAIL_YAML, "campaigns", "--source", sample_dir)

    code, out, _ = run(capsys, "entries", RETAIL_YAML)
    assert code == 0
    assert out.startswith("AC 'retail': 3 entries, ")
    for column in ("campaign_id", "campaign_name", "channel"):
        assert f"campaigns,{column}" in out

    code, out, _ = run(capsys, "entries", RETAIL_YAML, "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert sorted(r["anchor"] for r in rows) == [
        "campaigns,campaign_id",
        "campaigns,campaign_name",
        "campaigns,channel",
    ]
    assert {(r["domain"], r["dataset"], r["version"], r["level"]) for r in rows} == {
        ("QM", "column_profile", 1, "A")
    }


def test_generate_sample_writes_parquet_metadata_and_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir, database = tmp_path / "sample", tmp_path / "db" / "x.sqlite"
    code, out, _ = run(
        capsys,
        "generate-sample",
        "--rows", "500",
        "--days", "10",
        "--end-date", "2026-11-20",
        "--out", out_dir,
        "--sqlite", database,
    )  # fmt: skip
    assert code == 0
    assert "500 transactions to 2026-11-20" in out
    meta = json.loads((out_dir / "sample.json").read_text(encoding="utf-8"))
    assert (meta["rows"], meta["days"], meta["end_date"]) == (500, 10, "2026-11-20")
    transactions = pl.read_parquet(out_dir / "transactions.parquet")
    assert transactions.height == 500
    assert (transactions["event_date"].min(), transactions["event_date"].max()) == (
        date(2026, 11, 11),
        date(2026, 11, 20),
    )
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
    finally:
        engine.dispose()
    assert counts == {"transactions": 500, "stores": 24, "campaigns": 12}
