"""A real client of the Dagster UI's API (issue 6): ``dagster-webserver`` serving the code location
``metric_platform.definitions`` over the instance a test materialized into, queried over GraphQL.

The server runs as a subprocess in its own session, so the fixture's finalizer ends it and the
code server it spawned together. The instance is the repository's ``dagster.yaml`` copied into a
temporary ``DAGSTER_HOME`` (its event log is keyed on that variable), and the platform home is a
temporary ``METRIC_PLATFORM_HOME``: the webserver reads exactly what the test wrote.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from metric_platform.acs import load_acs
from metric_platform.defs.build import build_definitions
from metric_platform.settings import Settings

REPO = Path(__file__).resolve().parents[2]
WEBSERVER = Path(sys.executable).with_name("dagster-webserver")
READY_TIMEOUT_S = 25.0
FAMILY = dg.AssetKey(["retail", "revenue"])
MONTHLY = dg.AssetKey(["retail", "revenue", "region", "month"])
EXAMPLE = dg.AssetKey(["retail", "examples", "revenue_share_by_region_month"])
# Two runs of adjacent days and one apart: the UI must show two materialized ranges.
MATERIALIZED = ["2026-11-01", "2026-11-02", "2026-11-05"]

ASSET_GRAPH = """
query {
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    dependencyKeys { path }
  }
}
"""

PARTITIONS = """
query ($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      assetPartitionStatuses {
        __typename
        ... on TimePartitionStatuses { ranges { startKey endKey status } }
      }
    }
  }
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(limit: 20) { partition runId } }
  }
}
"""


@dataclass(frozen=True)
class Server:
    url: str
    log: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            payload: dict[str, Any] = json.load(response)
        assert "errors" not in payload, payload["errors"]
        data: dict[str, Any] = payload["data"]
        return data


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the server and the code server it spawned (its session), politely first."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"dagster-webserver exited with {process.returncode} before it was ready:\n{log.read_text()}"
            )
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(
        f"dagster-webserver did not answer {url}/server_info within {READY_TIMEOUT_S:.0f}s; its log:\n"
        f"{log.read_text()[-4000:]}"
    )


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Settings]:
    """A DAGSTER_HOME holding the repository's dagster.yaml, and the platform settings."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    # The consolidated event log's base_dir is read from DAGSTER_HOME, in this process too.
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    return dagster_home, Settings(home=tmp_path / "platform")


@pytest.fixture
def materialized(homes: tuple[Path, Settings]) -> Path:
    """``MATERIALIZED`` partitions of ``[retail, revenue]`` in the instance; returns DAGSTER_HOME."""
    dagster_home, settings = homes
    defs = build_definitions(load_acs(REPO / "data" / "acs", settings), settings, today=dt.date(2026, 11, 21))
    family = defs.resolve_assets_def(FAMILY)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for key in MATERIALIZED:
            result = dg.materialize([family], instance=instance, partition_key=key, resources=defs.resources)
            assert result.success
    return dagster_home


@pytest.fixture
def server(materialized: Path, homes: tuple[Path, Settings], tmp_path: Path) -> Iterator[Server]:
    _, settings = homes
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "webserver.log"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(materialized),
        "METRIC_PLATFORM_HOME": str(settings.home),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(WEBSERVER), "-h", "127.0.0.1", "-p", str(port), "-m", "metric_platform.definitions"],
            cwd=REPO,  # the code location reads data/acs relative to the working directory
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(process, url, log)
        yield Server(url, log)
    finally:
        _stop(process)


def test_the_webserver_serves_the_asset_graph_and_the_materialized_partitions(server: Server) -> None:
    nodes = {tuple(n["assetKey"]["path"]): n for n in server.graphql(ASSET_GRAPH)["assetNodes"]}

    family = nodes[tuple(FAMILY.path)]
    assert family["groupName"] == "retail"
    assert family["isPartitioned"] is True
    assert family["dependencyKeys"] == []
    monthly = nodes[tuple(MONTHLY.path)]
    assert monthly["groupName"] == "retail"
    assert [d["path"] for d in monthly["dependencyKeys"]] == [FAMILY.path]
    example = nodes[tuple(EXAMPLE.path)]
    assert [d["path"] for d in example["dependencyKeys"]] == [MONTHLY.path]
    # Both ACs of data/acs are asset groups of the one code location.
    assert {"retail", "outlets"} <= {n["groupName"] for n in nodes.values()}

    data = server.graphql(PARTITIONS, {"key": {"path": FAMILY.path}})
    statuses = data["assetNodeOrError"]["assetPartitionStatuses"]
    assert statuses["__typename"] == "TimePartitionStatuses"
    ranges = [(r["startKey"], r["endKey"], r["status"]) for r in statuses["ranges"]]
    assert ranges == [
        ("2026-11-01", "2026-11-02", "MATERIALIZED"),
        ("2026-11-05", "2026-11-05", "MATERIALIZED"),
    ]
    events = data["assetOrError"]["assetMaterializations"]
    assert sorted(e["partition"] for e in events) == MATERIALIZED
    assert len({e["runId"] for e in events}) == len(MATERIALIZED)  # one run per partition

    # A family asset nobody materialized: the server answers from the same instance, with nothing.
    spend = server.graphql(PARTITIONS, {"key": {"path": ["retail", "spend"]}})
    assert spend["assetNodeOrError"]["assetPartitionStatuses"]["ranges"] == []
