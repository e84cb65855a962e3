"""The Dagster instances the repository ships: the embedded one (top-level ``dagster.yaml``) loads
and materializes, the engine pool's limit holds steps back, the PostgreSQL one
(``deploy/postgres/dagster.yaml``) stores runs in a real server, and the home is prepared safely."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.event_log import ConsolidatedSqliteEventLogStorage
from dagster._utils.concurrency import ConcurrencySlotStatus
from sqlalchemy.engine import make_url

from metric_platform.defs.instance import (
    DAGSTER_HOME_ENV,
    EMBEDDED_TEMPLATE,
    PG_URL_ENV,
    POOL,
    POSTGRES_TEMPLATE,
    dagster_pg_url,
    instance_config,
    open_instance,
    prepare_dagster_home,
)
from metric_platform.errors import ConfigError

EXPECTED_POOL_LIMIT = instance_config(EMBEDDED_TEMPLATE)["concurrency"]["pools"]["default_limit"]
# Pool slot seen by the asset body while it runs: (slot_count, run ids holding a slot).
seen_in_step: list[tuple[int, set[str]]] = []


@dg.asset(pool=POOL)
def engine_step() -> dg.MaterializeResult[None]:
    """A stand-in for an engine-backed asset: records the pool as seen from inside the step."""
    context = dg.AssetExecutionContext.get()
    info = context.instance.event_log_storage.get_concurrency_info(POOL)
    seen_in_step.append((info.slot_count, {slot.run_id for slot in info.claimed_slots}))
    return dg.MaterializeResult(metadata={"value": 1})


@pytest.fixture
def no_dagster_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DAGSTER_HOME_ENV, raising=False)
    seen_in_step.clear()


@pytest.fixture
def embedded(tmp_path: Path, no_dagster_home: None) -> Iterator[dg.DagsterInstance]:
    with open_instance(prepare_dagster_home(tmp_path / "home", EMBEDDED_TEMPLATE)) as instance:
        yield instance


def test_embedded_instance_materializes_into_its_home(tmp_path: Path, embedded: dg.DagsterInstance) -> None:
    home = tmp_path / "home"
    assert isinstance(embedded.event_log_storage, ConsolidatedSqliteEventLogStorage)
    assert isinstance(embedded.run_coordinator, QueuedRunCoordinator)
    assert not embedded.telemetry_enabled
    assert os.environ[DAGSTER_HOME_ENV] == str(home)

    result = dg.materialize([engine_step], instance=embedded)

    assert result.success
    # One event log for every run, in the home (not a database per run under history/runs/).
    assert (home / "event_log.db").is_file()
    assert not (home / "history" / "runs").exists()
    event = embedded.get_latest_materialization_event(dg.AssetKey("engine_step"))
    assert event is not None
    assert event.run_id == result.run_id
    # The step held one of the pool's slots, and the pool had the configured size.
    assert seen_in_step == [(EXPECTED_POOL_LIMIT, {result.run_id})]


def test_open_instance_restores_an_unset_dagster_home(tmp_path: Path, no_dagster_home: None) -> None:
    home = prepare_dagster_home(tmp_path / "home", EMBEDDED_TEMPLATE)
    with open_instance(home):
        assert os.environ[DAGSTER_HOME_ENV] == str(home)
    assert DAGSTER_HOME_ENV not in os.environ


def test_run_queue_limits_come_from_the_template(embedded: dg.DagsterInstance) -> None:
    runs = instance_config(EMBEDDED_TEMPLATE)["concurrency"]["runs"]
    config = embedded.get_concurrency_config()
    assert config.run_queue_config is not None
    assert config.run_queue_config.max_concurrent_runs == runs["max_concurrent_runs"]
    assert [dict(limit) for limit in config.run_queue_config.tag_concurrency_limits] == runs[
        "tag_concurrency_limits"
    ]
    assert config.pool_config.default_pool_limit == EXPECTED_POOL_LIMIT


def test_a_full_pool_holds_an_engine_step_until_a_slot_frees(embedded: dg.DagsterInstance) -> None:
    storage = embedded.event_log_storage
    others = [f"other-run-{i}" for i in range(EXPECTED_POOL_LIMIT)]
    storage.initialize_concurrency_limit_to_default(POOL)
    for run_id in others:
        assert storage.claim_concurrency_slot(POOL, run_id, "step").is_claimed
    # One more claim than the limit is refused by the storage itself ...
    assert storage.claim_concurrency_slot(POOL, "one-too-many", "step").slot_status == (
        ConcurrencySlotStatus.BLOCKED
    )
    storage.free_concurrency_slots_for_run("one-too-many")

    # ... and a materialization of an engine step waits for a slot rather than run beside them.
    outcome: list[bool] = []
    worker = threading.Thread(
        target=lambda: outcome.append(dg.materialize([engine_step], instance=embedded).success)
    )
    worker.start()
    deadline = time.monotonic() + 20
    while not any(
        step.step_key == "engine_step" for step in storage.get_concurrency_info(POOL).pending_steps
    ):
        assert time.monotonic() < deadline, "the step never queued for a slot of the pool"
        assert worker.is_alive(), "the materialization ended without waiting for a slot"
        time.sleep(0.05)
    time.sleep(0.5)  # a step that ignored its pending claim would have run by now
    assert seen_in_step == [], "the step ran although every slot of the pool was held"
    storage.free_concurrency_slots_for_run(others[0])
    worker.join(timeout=30)
    assert outcome == [True]
    assert len(seen_in_step) == 1


def test_open_instance_refuses_a_dagster_home_naming_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = prepare_dagster_home(tmp_path / "home", EMBEDDED_TEMPLATE)
    monkeypatch.setenv(DAGSTER_HOME_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="unset DAGSTER_HOME or set it to"), open_instance(home):
        pass


def test_prepare_dagster_home_copies_replaces_and_keeps(tmp_path: Path) -> None:
    home = tmp_path / "nested" / "home"
    assert prepare_dagster_home(home, EMBEDDED_TEMPLATE) == home.resolve()
    target = home / "dagster.yaml"
    assert target.read_bytes() == EMBEDDED_TEMPLATE.read_bytes()
    (home / "history").mkdir()
    (home / "history" / "runs.db").write_bytes(b"runs")

    inode = target.stat().st_ino
    prepare_dagster_home(home, EMBEDDED_TEMPLATE)
    assert target.stat().st_ino == inode, "an identical file is left as it is"

    prepare_dagster_home(home, POSTGRES_TEMPLATE)
    assert target.read_bytes() == POSTGRES_TEMPLATE.read_bytes()
    assert (home / "history" / "runs.db").read_bytes() == b"runs"
    assert not list(home.glob(".*.tmp"))


def test_a_broken_template_is_refused_before_it_replaces_the_home_file(tmp_path: Path) -> None:
    home = prepare_dagster_home(tmp_path / "home", EMBEDDED_TEMPLATE)
    broken = tmp_path / "broken" / "dagster.yaml"
    broken.parent.mkdir()
    broken.write_text("concurrency:\n  runs:\n    max_concurent_runs: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken/dagster\.yaml"):
        prepare_dagster_home(home, broken)
    assert (home / "dagster.yaml").read_bytes() == EMBEDDED_TEMPLATE.read_bytes()
    with pytest.raises(ConfigError, match="no such file"):
        instance_config(tmp_path / "missing.yaml")
    broken.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        instance_config(broken)


def test_both_templates_queue_and_pool_alike() -> None:
    embedded, postgres = instance_config(EMBEDDED_TEMPLATE), instance_config(POSTGRES_TEMPLATE)
    for key in ("run_coordinator", "concurrency", "telemetry"):
        assert embedded[key] == postgres[key], key
    assert postgres["storage"]["postgres"]["postgres_url"] == {"env": PG_URL_ENV}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p%40ss@h:5433/d", "postgresql+psycopg2://u:p%40ss@h:5433/d"),
        ("postgresql+psycopg://u@h/d?sslmode=require", "postgresql+psycopg2://u@h/d?sslmode=require"),
    ],
)
def test_dagster_pg_url_names_psycopg2(url: str, expected: str) -> None:
    assert dagster_pg_url(url) == expected


def test_dagster_pg_url_refuses_other_databases() -> None:
    with pytest.raises(ConfigError, match="needs PostgreSQL"):
        dagster_pg_url("sqlite:///x.db")
    with pytest.raises(ConfigError, match="not a database URL") as caught:
        dagster_pg_url("not a url:secret")
    assert "secret" not in str(caught.value)


@pytest.fixture
def dagster_pg_database(pg_server_url: str) -> Iterator[str]:
    """A throwaway database on the test server for a Dagster instance, dropped afterwards: Dagster's
    tables (runs, event_logs, ...) live in the public schema, away from the platform's tests."""
    admin = make_url(pg_server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"mp_dagster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_postgres_instance_stores_a_run_in_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_dagster_home: None, dagster_pg_database: str
) -> None:
    monkeypatch.setenv(PG_URL_ENV, dagster_pg_url(dagster_pg_database))
    home = prepare_dagster_home(tmp_path / "home", POSTGRES_TEMPLATE)
    with open_instance(home) as writer:
        assert type(writer.event_log_storage).__module__.startswith("dagster_postgres")
        result = dg.materialize([engine_step], instance=writer)
        assert result.success
        assert seen_in_step == [(EXPECTED_POOL_LIMIT, {result.run_id})]

    # A second instance object on the same configuration reads the run back from the server.
    with dg.DagsterInstance.from_config(str(home)) as reader:
        run = reader.get_run_by_id(result.run_id)
        assert run is not None
        assert run.status == dg.DagsterRunStatus.SUCCESS
        event = reader.get_latest_materialization_event(dg.AssetKey("engine_step"))
        assert event is not None
        assert event.run_id == result.run_id
        limits = {limit.name: limit.limit for limit in reader.event_log_storage.get_pool_limits()}
        assert limits == {POOL: EXPECTED_POOL_LIMIT}

    # And the rows are in PostgreSQL itself, not in a file under the home.
    database = make_url(dagster_pg_database).set(drivername="postgresql")
    with psycopg.connect(database.render_as_string(hide_password=False)) as conn:
        row = conn.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,)).fetchone()
        materializations = conn.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (result.run_id, "ASSET_MATERIALIZATION"),
        ).fetchone()
    assert row == ("SUCCESS",)
    assert materializations == (1,)
    assert not list(home.rglob("*.db"))
