"""``metric-platform serve`` and ``query``: answers, formats, explain; bad input exits 2, memoizes nothing."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import AggregateRequest, DateWindow
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.sample_data import PROJECT_ID, TENANT_ID, generate
from metric_platform.semantics.loader import load_ac
from metric_platform.settings import Settings
from metric_platform_tests.cli.conftest import run
from metric_platform_tests.engine.conftest import RETAIL_YAML, SAMPLE_SPEC

FROM, TO = "2026-10-22", "2026-11-20"
WINDOW = DateWindow(date(2026, 10, 22), date(2026, 11, 20))


def direct(sample_dir: Path, family: str, grain: tuple[str, ...]) -> pl.DataFrame:
    ac = load_ac(RETAIL_YAML, source_path=sample_dir)
    request = AggregateRequest(ac.family(family), ac.canonical_grain(grain), window=WINDOW)
    return backend_for(ac).aggregate(request).collect().select([*grain, family])


def entry_count(home: Path) -> int:
    with EntryStore.from_settings(Settings(home=home).for_project(TENANT_ID, PROJECT_ID)) as store:
        return len(store.list_entries("retail"))


def test_serve_prints_the_answer_as_csv_and_explains_the_rollup(
    sample_dir: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("serve", RETAIL_YAML, "revenue", "--source", sample_dir, "--from", FROM, "--to", TO)
    code, out, _ = run(capsys, *base, "--anchor", "store,day", "--format", "csv")
    assert code == 0
    got = pl.read_csv(io.StringIO(out), try_parse_dates=True)
    assert_frame_equal(
        got, direct(sample_dir, "revenue", ("store", "day")), check_row_order=False, rel_tol=1e-9
    )

    code, out, err = run(capsys, *base, "--anchor", "region,day", "--format", "json", "--explain")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == direct(sample_dir, "revenue", ("region", "day")).height
    assert "path: rollup from (store, day)" in err
    assert "store->region (dimension map)" in err


def test_serve_explain_says_why_other_entries_were_not_used(
    sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("serve", RETAIL_YAML, "revenue", "--source", sample_dir, "--from", FROM, "--to", TO)
    assert run(capsys, *base, "--anchor", "campaign,day")[0] == 0
    code, out, _ = run(capsys, *base, "--anchor", "region,month", "--explain")
    assert code == 0
    assert "partial buckets (not memoized): 2026-10-01, 2026-11-01" in out
    assert "not used (campaign, day): not finer: nothing in (campaign, day) determines region" in out


def test_query_applies_post_grain_ops_in_the_order_written(
    sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = (
        "query", RETAIL_YAML, "--source", sample_dir, "--from", FROM, "--to", TO,
        "--metrics", "revenue,transaction_count", "--grain", "region", "--format", "json",
        "--derive", "per_txn=revenue / nullif(transaction_count, 0)",
    )  # fmt: skip
    code, out, _ = run(capsys, *base, "--order", "-revenue", "--limit", "2", "--having", "per_txn > 0")
    assert code == 0
    first = pl.DataFrame(json.loads(out))
    expected = (
        direct(sample_dir, "revenue", ("region",)).sort("revenue", descending=True, nulls_last=True).head(2)
    )
    assert first["region"].to_list() == expected["region"].to_list()

    code, out, _ = run(capsys, *base, "--having", "revenue < 0", "--order", "-revenue", "--limit", "2")
    assert code == 0
    assert json.loads(out) == []


def test_query_limit_per_group(sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "query", RETAIL_YAML, "--source", sample_dir, "--from", FROM, "--to", TO,
        "--metrics", "revenue", "--grain", "region,month",
        "--order", "-revenue", "--limit", "1", "--per", "month", "--format", "json",
    )  # fmt: skip
    assert code == 0
    frame = pl.DataFrame(json.loads(out))
    assert frame.height == 2  # October and November
    assert frame["month"].n_unique() == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("serve", "revenu", "--anchor", "region"), "unknown metric family 'revenu'"),
        (("serve", "revenue", "--anchor", "regio"), "did you mean 'region'"),
        (("serve", "revenue", "--anchor", "region", "--from", FROM), "give both --from and --to"),
        (("query", "--metrics", "revenue", "--grain", "region", "--derive", "x=revenue/"), "cannot parse"),
        (("query", "--metrics", "revenue", "--grain", "region", "--having", "revenue >> 1"), "revenue >> 1"),
        (("query", "--metrics", "revenue", "--grain", "region", "--order", "-revnue"), "revnue"),
        (("query", "--metrics", "revenue", "--grain", "region", "--per", "region"), "--per COL belongs"),
    ],
)
def test_bad_input_is_a_one_line_error_and_memoizes_nothing(
    sample_dir: Path, home: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    command, *rest = argv
    code, out, err = run(capsys, command, RETAIL_YAML, "--source", sample_dir, *rest)
    assert code == 2, out + err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert not home.exists() or entry_count(home) == 0


def test_serve_with_the_sqlite_backend_gives_the_polars_answer(
    sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from metric_platform.backends.sql_load import load_frames

    database = tmp_path / "retail.sqlite"
    load_frames(f"sqlite:///{database}", generate(SAMPLE_SPEC))
    common = ("--anchor", "region,month", "--from", FROM, "--to", TO, "--format", "csv")
    code, out, _ = run(
        capsys, "serve", RETAIL_YAML, "revenue", "--backend", "sqlite", "--source", database, *common
    )
    assert code == 0
    got = pl.read_csv(io.StringIO(out), try_parse_dates=True)
    assert_frame_equal(
        got, direct(sample_dir, "revenue", ("region", "month")), check_row_order=False, rel_tol=1e-9
    )
    code, _, err = run(capsys, "serve", RETAIL_YAML, "revenue", "--backend", "sqlite", *common)
    assert code == 2
    assert "--backend sqlite needs --source PATH" in err
