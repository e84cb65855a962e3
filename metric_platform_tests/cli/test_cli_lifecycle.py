"""``metric-platform stale | refresh | evict | recommend``: state built through the CLI itself.

The sample's last day is 2026-11-20 and the retail AC holds days back 3 days: served "on"
2026-11-21 (cutoff 2026-11-18), the days 2026-11-19 and 2026-11-20 are memoized provisional; each
becomes stale on the day the cutoff reaches it (2026-11-22 and 2026-11-23).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from metric_platform import cli
from metric_platform.backends.factory import backend_for
from metric_platform.cli_lifecycle import parse_byte_size
from metric_platform.engine.engine import MetricEngine
from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.loader import load_ac
from metric_platform_tests.cli.conftest import run
from metric_platform_tests.engine.conftest import RETAIL_YAML, SAMPLE_WINDOW, fixed_today, write_ac_variant

FROM, TO = "2026-10-22", "2026-11-20"
SERVED_ON = "2026-11-21"  # cutoff 2026-11-18: the last two days are provisional


def serve(capsys: pytest.CaptureFixture[str], sample_dir: Path, family: str, anchor: str) -> None:
    argv = ("serve", RETAIL_YAML, family, "--anchor", anchor, "--source", sample_dir)
    code, _, err = run(capsys, *argv, "--from", FROM, "--to", TO, "--today", SERVED_ON, "--format", "csv")
    assert code == 0, err


def json_of(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Any:
    code, out, err = run(capsys, *argv, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def stale_days(
    capsys: pytest.CaptureFixture[str], sample_dir: Path, today: str
) -> dict[tuple[str, ...], list[str]]:
    """(family, *anchor) -> its stale days on ``today``."""
    report = json_of(capsys, "stale", RETAIL_YAML, "--source", sample_dir, "--today", today)
    return {(g["family"], *g["anchor"]): g["days"] for g in report["groups"]}


def entry_count(capsys: pytest.CaptureFixture[str]) -> int:
    return len(json_of(capsys, "entries", RETAIL_YAML))


# -- stale / refresh -----------------------------------------------------------------------------
def test_stale_lists_exactly_the_days_that_crossed_the_cutoff(
    sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(capsys, sample_dir, "conversions", "store,day")

    code, out, _ = run(capsys, "stale", RETAIL_YAML, "--source", sample_dir, "--today", SERVED_ON)
    assert code == 0
    assert out.splitlines() == [
        "AC 'retail': stability cutoff 2026-11-18 (today 2026-11-21, hold-off 3 days)",
        "nothing is stale",
    ]
    assert stale_days(capsys, sample_dir, "2026-11-22") == {("conversions", "store", "day"): ["2026-11-19"]}

    code, out, _ = run(capsys, "stale", RETAIL_YAML, "--source", sample_dir, "--today", "2026-11-23")
    assert code == 0
    assert out.splitlines() == [
        "AC 'retail': stability cutoff 2026-11-20 (today 2026-11-23, hold-off 3 days)",
        "  conversions at (store, day): 2 slice(s) 2026-11-19..2026-11-20",
        "total: 2 slices stale in 1 grain",
    ]
    report = json_of(capsys, "stale", RETAIL_YAML, "--source", sample_dir, "--today", "2026-12-31")
    assert report == {
        "ac": "retail",
        "today": "2026-12-31",
        "hold_off_days": 3,
        "cutoff": "2026-12-28",
        "groups": [
            {
                "family": "conversions",
                "anchor": ["store", "day"],
                "days": ["2026-11-19", "2026-11-20"],
                "ranges": "2026-11-19..2026-11-20",
                "slices": 2,
                "pinned": False,
            }
        ],
        "total_slices": 2,
    }


def test_refresh_dry_run_changes_nothing_and_refresh_clears_the_stale_slices(
    sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(capsys, sample_dir, "conversions", "store,day")
    later = ("--today", "2026-11-23")
    expected = {("conversions", "store", "day"): ["2026-11-19", "2026-11-20"]}
    assert stale_days(capsys, sample_dir, "2026-11-23") == expected

    code, out, _ = run(capsys, "refresh", RETAIL_YAML, "--source", sample_dir, "--dry-run", *later)
    assert code == 0
    assert out.splitlines()[1:] == [
        "would recompute 2 slices (stale) in 1 grain (dry run):",
        "  conversions at (store, day): 2 slice(s) 2026-11-19..2026-11-20",
    ]
    assert stale_days(capsys, sample_dir, "2026-11-23") == expected, "a dry run recomputes nothing"

    report = json_of(capsys, "refresh", RETAIL_YAML, "--source", sample_dir, *later)
    assert (report["dry_run"], report["slices"], report["recomputed"]) == (False, 2, 2)
    assert report["cutoff"] == "2026-11-20"
    assert report["backend_calls"] == 1, "two consecutive days: one backend range"
    assert stale_days(capsys, sample_dir, "2026-11-23") == {}

    code, out, _ = run(capsys, "refresh", RETAIL_YAML, "--source", sample_dir, *later)
    assert code == 0
    assert out.splitlines()[-1] == "nothing is stale: nothing to refresh"


def test_refresh_provisional_recomputes_days_still_inside_the_hold_off(
    sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(capsys, sample_dir, "conversions", "store,day")
    argv = ("refresh", RETAIL_YAML, "--source", sample_dir, "--today", SERVED_ON)

    code, out, _ = run(capsys, *argv)
    assert (code, out.splitlines()[-1]) == (0, "nothing is stale: nothing to refresh")

    code, out, _ = run(capsys, *argv, "--provisional")
    assert code == 0
    assert out.splitlines()[1:3] == [
        "recomputed 2 slices (provisional) in 1 grain:",
        "  conversions at (store, day): 2 slice(s) 2026-11-19..2026-11-20",
    ]
    # Recomputed on the same day, they are provisional still, and go stale on the same days.
    assert stale_days(capsys, sample_dir, "2026-11-22") == {("conversions", "store", "day"): ["2026-11-19"]}


# -- evict ---------------------------------------------------------------------------------------
def test_evict_to_zero_bytes_removes_every_unpinned_entry_and_a_dry_run_nothing(
    sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(capsys, sample_dir, "conversions", "store,day")
    serve(capsys, sample_dir, "spend", "campaign,day")
    entries = entry_count(capsys)
    assert entries > 0

    code, out, _ = run(capsys, "evict", RETAIL_YAML)
    assert code == 0
    assert "nothing to evict" in out, "the default 1 GiB budget holds this small sample"

    code, out, _ = run(capsys, "evict", RETAIL_YAML, "--to-bytes", "0", "--dry-run")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "AC 'retail': policy fd_dag, target 0 bytes (budget 1073741824)"
    assert lines[1].endswith(" -> 0; pinned bytes 0 (never evicted)")
    assert lines[2].startswith("would evict ") and lines[2].endswith("(dry run: nothing removed):")
    assert any(line.startswith("  METRIC conversions at (store, day): ") for line in lines)
    assert any(line.startswith("  METRIC spend at (campaign, day): ") for line in lines)
    assert entry_count(capsys) == entries, "a dry run evicts nothing"

    report = json_of(capsys, "evict", RETAIL_YAML, "--to-bytes", "0")
    assert report["evictable_before"] > 0
    assert (report["evictable_after"], report["pinned_bytes"], report["dry_run"]) == (0, 0, False)
    assert report["bytes_evicted"] == report["evictable_before"]
    assert sum(unit["slices"] for unit in report["evicted"]) == entries
    assert set(report) == {
        "ac", "policy", "budget", "target", "dry_run", "evictable_before", "evictable_after",
        "pinned_bytes", "pinned_over_budget", "bytes_evicted", "rows_skipped", "evicted",
    }  # fmt: skip
    code, out, _ = run(capsys, "entries", RETAIL_YAML)
    assert (code, out.strip()) == (0, "AC 'retail': 0 entries, 0 bytes")


def test_evict_keeps_pinned_entries_and_warns_when_they_alone_exceed_the_budget(
    sample_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ac = load_ac(RETAIL_YAML, source_path=sample_dir)
    backend = backend_for(ac)
    # A materialized partition pins its entries (the Dagster path; the CLI has no pin).
    with MetricEngine.open(ac, today=fixed_today) as engine:
        engine.serve_metric("conversions", ("store", "day"), backend=backend, window=SAMPLE_WINDOW, pin=True)
    backend.close()
    pinned = entry_count(capsys)
    monkeypatch.setenv("METRIC_PLATFORM_MAX_BYTES_PER_AC", "100")

    code, out, _ = run(capsys, "evict", RETAIL_YAML, "--to-bytes", "0")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "AC 'retail': policy fd_dag, target 0 bytes (budget 100)"
    assert lines[2] == "nothing to evict: 0 evictable bytes within the target"
    assert lines[-1].startswith("warning: pinned entries alone hold ")
    assert "over the 100-byte budget" in lines[-1]
    assert entry_count(capsys) == pinned


@pytest.mark.parametrize("value", ["ten", "-1", "10XB", "1e6", "", "MB"])
def test_a_bad_to_bytes_is_a_user_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "evict", RETAIL_YAML, f"--to-bytes={value}")
    assert (code, out) == (cli.EXIT_USER_ERROR, "")
    assert err.startswith(f"error: --to-bytes {value!r} is not a byte size")
    assert "e.g. 500MB" in err


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("4096", 4096),
        ("10MB", 10_000_000),
        ("10 mb", 10_000_000),
        ("1GiB", 1024**3),
        ("1.5KiB", 1536),
        ("2kB", 2000),
        ("100000000000000000000", 10**20),
    ],
)
def test_parse_byte_size(text: str, size: int) -> None:
    assert parse_byte_size(text) == size


def test_parse_byte_size_rejects_units_it_does_not_know() -> None:
    with pytest.raises(InvalidRequestError, match="'3 parsecs' is not a byte size"):
        parse_byte_size("3 parsecs")


# -- recommend -----------------------------------------------------------------------------------
def test_recommend_without_traffic_says_none(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "recommend", RETAIL_YAML)
    assert (code, out.strip()) == (0, "AC 'retail': no recommendations")
    assert json_of(capsys, "recommend", RETAIL_YAML) == {"ac": "retail", "recommendations": []}


def test_recommend_a_hot_grain_whose_stanza_pastes_into_a_valid_ac(
    sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRIC_PLATFORM_PROMOTION_MIN_HITS", "3")
    monkeypatch.setenv("METRIC_PLATFORM_PROMOTION_MIN_DAYS", "1")
    for _ in range(2):
        serve(capsys, sample_dir, "revenue", "store,month")
    assert json_of(capsys, "recommend", RETAIL_YAML)["recommendations"] == [], "2 hits are not hot"
    serve(capsys, sample_dir, "revenue", "store,month")

    (rec,) = json_of(capsys, "recommend", RETAIL_YAML)["recommendations"]
    assert (rec["kind"], rec["family"], rec["anchor"], rec["hits"]) == (
        "cache_hint",
        "revenue",
        ["store", "month"],
        3,
    )
    code, out, _ = run(capsys, "recommend", RETAIL_YAML)
    assert code == 0
    assert "[cache_hint] revenue at (store, month): 3 hit(s)" in out
    assert rec["stanza"].splitlines()[0] in out

    # Paste it over the family's cache_hint block (indented as the family's keys are).
    old = "    cache_hint:\n      materialize_at:\n        - [region, day]\n        - [region, month]\n"
    old += "        - [region]\n"
    new = "".join(f"    {line}\n" for line in rec["stanza"].splitlines())
    pasted = write_ac_variant(tmp_path / "acs", {old: new})
    code, out, err = run(capsys, "validate", pasted)
    assert (code, err) == (0, "")
    assert "cache hints [region, day]; [region, month]; [region]; [store, month]," in out
    assert load_ac(pasted).family("revenue").cache_grains[-1] == ("store", "month")


def test_a_bad_today_is_rejected_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["stale", str(RETAIL_YAML), "--today", "2026-11-31"])
    assert exc.value.code == cli.EXIT_USER_ERROR
    assert "argument --today: not a day: '2026-11-31' (expected YYYY-MM-DD)" in capsys.readouterr().err


def test_refresh_late_updates_reports_days_updated_after_they_were_stable(
    sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(capsys, sample_dir, "conversions", "store,day")
    argv = ("refresh", RETAIL_YAML, "--source", sample_dir, "--today", "2026-11-25", "--late-updates")
    dry = json_of(capsys, *argv, "--dry-run")
    assert dry["late_days"], "the sample updates some rows 4-5 days late, past the 3-day hold-off"
    late = [d["day"] for d in dry["late_days"]]
    assert all(FROM <= day <= "2026-11-22" for day in late)
    # Served just now, after every update of the sample: the slices already hold them.
    assert dry["late_groups"] == []
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert f"late updates: {len(late)} day(s) had " in out
    assert "the longest delay was 5 days against a hold-off of 3: consider hold_off_days: 6" in out
    assert "computed after their last update: nothing to recompute" in out
