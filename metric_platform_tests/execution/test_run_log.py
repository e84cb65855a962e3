"""AC-6: deterministic start/end lines with the mode, the scope and the dry-run flag."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from metric_platform.execution import MetricExecutionEngine
from metric_platform.execution.run_log import EXTRA_KEY
from metric_platform_tests.execution.conftest import EchoWork, FakeRecorder, make_context


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "metric_platform.execution"]


def test_two_executions_of_one_context_log_the_same_start_and_end_lines(
    work: EchoWork, recorder: FakeRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    engine = MetricExecutionEngine([work], recorder=recorder)
    context = make_context(scope={"ac": "retail", "days": {"start": "2026-03-01", "end": "2026-03-07"}})
    with caplog.at_level(logging.INFO, logger="metric_platform.execution"):
        engine.execute(context)
        first = _lines(caplog)
        caplog.clear()
        engine.execute(context)
        second = _lines(caplog)
    assert first == second
    start, end = first
    label = (
        "work=test.echo mode=SCHEDULED trigger=BATCH ac=retail days=2026-03-01..2026-03-07 "
        "dry_run=false run=run-1 step=test.echo[2026-03-01] attempt=1"
    )
    assert start == f"execution started: {label}"
    assert end == f"execution completed: {label}"


def test_durations_and_clock_readings_go_in_the_structured_fields_only(
    work: EchoWork, caplog: pytest.LogCaptureFixture
) -> None:
    engine = MetricExecutionEngine([work], recorder=None)
    with caplog.at_level(logging.INFO, logger="metric_platform.execution"):
        result = engine.execute(make_context())
    start, end = (r for r in caplog.records if r.name == "metric_platform.execution")
    fields: dict[str, Any] = getattr(end, EXTRA_KEY)
    assert getattr(start, EXTRA_KEY)["event"] == "execution.start"
    assert fields["event"] == "execution.end" and fields["status"] == "COMPLETED"
    assert fields["duration_ms"] == round(result.duration_ms, 3)
    assert fields["started_at"] == result.started_at.isoformat()
    for key, value in {"mode": "SCHEDULED", "scope": "ac=retail days=2026-03-01", "dry_run": False}.items():
        assert fields[key] == value
    assert str(fields["duration_ms"]) not in end.getMessage()


def test_a_dry_run_says_so_in_both_lines_and_lists_the_suppressed_writes(
    work: EchoWork, recorder: FakeRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    engine = MetricExecutionEngine([work], recorder=recorder)
    with caplog.at_level(logging.INFO, logger="metric_platform.execution"):
        engine.execute(make_context(dry_run=True))
    start, end = _lines(caplog)
    assert start.startswith("DRY RUN execution started: ") and "dry_run=true" in start
    assert end.startswith("DRY RUN execution completed: ")
    assert end.endswith("; suppressed writes: ledger.append x2, test.write x1")


def test_the_lines_go_to_a_logger_passed_to_the_engine_or_to_one_call(work: EchoWork) -> None:
    engine_logger, call_logger = logging.getLogger("test.engine_log"), logging.getLogger("test.call_log")
    collected = {name: Collect() for name in ("engine", "call")}
    engine_logger.addHandler(collected["engine"])
    call_logger.addHandler(collected["call"])
    engine_logger.setLevel(logging.INFO)
    call_logger.setLevel(logging.INFO)
    try:
        engine = MetricExecutionEngine([work], recorder=None, logger=engine_logger)
        engine.execute(make_context())
        engine.execute(make_context(), logger=call_logger)
    finally:
        engine_logger.removeHandler(collected["engine"])
        call_logger.removeHandler(collected["call"])
    by_engine = [r.getMessage() for r in collected["engine"].records]
    by_call = [r.getMessage() for r in collected["call"].records]
    assert by_engine == by_call and len(by_call) == 2


def test_a_dagster_logger_gets_the_same_lines_and_fields(
    work: EchoWork, caplog: pytest.LogCaptureFixture
) -> None:
    import dagster as dg

    dagster_log = dg.build_op_context().log
    assert isinstance(dagster_log, logging.Logger)
    collect = Collect()
    dagster_log.addHandler(collect)
    engine = MetricExecutionEngine([work], recorder=None)
    with caplog.at_level(logging.INFO, logger="metric_platform.execution"):
        engine.execute(make_context())
    engine.execute(make_context(), logger=dagster_log)
    plain = _lines(caplog)
    # Dagster prefixes its own "<step> - " to the message; the line itself is unchanged.
    assert [r.getMessage().split(" - ", 1)[-1] for r in collect.records] == plain
    assert [getattr(r, EXTRA_KEY)["event"] for r in collect.records] == ["execution.start", "execution.end"]
