"""Fixtures of the CLI tests: every command runs under a tmp engine home, on a small sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from metric_platform import cli
from metric_platform.sample_data import generate, write_parquet
from metric_platform_tests.engine.conftest import SAMPLE_SPEC


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli-sample")
    write_parquet(generate(SAMPLE_SPEC), directory)
    return directory


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every command's Settings() reads this home; nothing may land in the repository's store."""
    monkeypatch.setenv("METRIC_PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("METRIC_PLATFORM_ENGINE_MANIFEST_URL", raising=False)
    monkeypatch.delenv("METRIC_PLATFORM_ENGINE_DATA_DIR", raising=False)
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err
