"""The installation file (seed 003 §10.3): ``metric_engine`` settings under the home, overridden
by the environment, malformed files rejected with the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from metric_platform import cli
from metric_platform.errors import ConfigError
from metric_platform.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOME", "MAX_BYTES_PER_AC", "MAX_ENTRY_BYTES", "EVICTION_POLICY", "INSTALLATION_FILE"):
        monkeypatch.delenv(f"METRIC_PLATFORM_{name}", raising=False)


def write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "installation.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_file_sets_the_engine_limits_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "metric_engine:\n  max_bytes_per_ac: 5000\n  eviction_policy: lru\n")
    settings = Settings(home=tmp_path)
    assert (settings.max_bytes_per_ac, settings.entry_byte_cap, settings.eviction_policy) == (
        5000,
        500,
        "lru",
    )
    monkeypatch.setenv("METRIC_PLATFORM_HOME", str(tmp_path))
    monkeypatch.setenv("METRIC_PLATFORM_MAX_BYTES_PER_AC", "7000")
    assert Settings().max_bytes_per_ac == 7000
    assert Settings().eviction_policy == "lru"


def test_no_file_means_the_defaults(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert (settings.max_bytes_per_ac, settings.eviction_policy) == (1024**3, "fd_dag")


def test_an_explicit_file_elsewhere_is_read_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "etc", "metric_engine:\n  promotion_min_hits: 42\n")
    assert Settings(home=tmp_path, installation_file=path).promotion_min_hits == 42
    with pytest.raises(ConfigError, match="does not exist"):
        Settings(home=tmp_path, installation_file=tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metric_engine:\n  max_byte_per_ac: 5\n", "did you mean 'max_bytes_per_ac'"),
        ("metric_engin:\n  max_bytes_per_ac: 5\n", "metric_engin: unknown section"),
        ("metric_engine: [1, 2]\n", "expected a mapping"),
        ("metric_engine:\n  max_bytes_per_ac: [\n", "fix the YAML syntax"),
    ],
)
def test_a_malformed_file_is_a_config_error_naming_what_to_fix(
    tmp_path: Path, text: str, expected: str
) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected):
        Settings(home=tmp_path)


def test_an_out_of_range_value_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, "metric_engine:\n  max_bytes_per_ac: 100\n  max_entry_bytes: 200\n")
    with pytest.raises(ValidationError, match="max_entry_bytes cannot exceed max_bytes_per_ac"):
        Settings(home=tmp_path)


def test_the_cli_reports_a_bad_file_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "metric_engine:\n  eviction_policy: random\n")
    monkeypatch.setenv("METRIC_PLATFORM_HOME", str(tmp_path))
    code = cli.main(["evict", "data/acs/retail.yaml", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "eviction_policy" in err and "Traceback" not in err
