"""A projector SIGKILLed at random moments over a 20k-event log, restarted each time, ends exactly
where a clean fold does: every event applied once, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import signal
import time

from metric_platform.ledger.projector import Projector, Watermark
from metric_platform.ledger.store import RunEventStore
from metric_platform_tests.ledger._projector_support import (
    bulk_load,
    clean_fold,
    projector_worker,
    snapshot_progress,
    stored_snapshots,
    synthetic_run,
)

log = logging.getLogger(__name__)

RUNS = 80
EVENTS_PER_RUN = 250  # 20,000 events
MIN_KILLS = 5
MAX_KILLS = 12


def test_sigkilled_projector_resumes_to_the_clean_fold(
    ledger_store: RunEventStore, platform_url: str
) -> None:
    engine = ledger_store.engine
    rng = random.Random(20260301)
    logs = {f"run-{i:03d}": synthetic_run(f"run-{i:03d}", EVENTS_PER_RUN, rng) for i in range(RUNS)}
    total = bulk_load(engine, logs)
    assert total == RUNS * EVENTS_PER_RUN

    ctx = multiprocessing.get_context("spawn")
    progress: list[int] = []
    mid_way = 0
    kills = 0
    while kills < MAX_KILLS and (kills < MIN_KILLS or mid_way == 0):
        started = ctx.Event()
        proc = ctx.Process(
            target=projector_worker, args=(platform_url, rng.choice([100, 250, 1000]), started)
        )
        proc.start()
        assert started.wait(60), "the projector process did not start"
        time.sleep(rng.uniform(0.02, 0.5))
        if proc.is_alive():
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.join(30)
        assert proc.exitcode in (0, -signal.SIGKILL), proc.exitcode
        done = snapshot_progress(engine)
        mid_way += 0 < done < total and (not progress or done > progress[-1])
        progress.append(done)
        if done == total and proc.exitcode == 0:
            break
    log.info("projector kills: %d, progress after each: %s", kills, progress)
    assert mid_way >= 1, f"no kill landed mid-projection: {progress}"

    Projector(engine).poll()
    final = Projector(engine).poll()  # a restarted projector re-applies nothing
    assert final.applied == 0
    rows = stored_snapshots(engine)
    assert sorted(rows) == sorted(logs)
    for run_id, events in logs.items():
        snapshot, halted = rows[run_id]
        assert halted is None
        assert snapshot.events_applied == len(events), run_id  # applied once
        assert snapshot == clean_fold(ledger_store, run_id), run_id
    if engine.dialect.name == "sqlite":
        assert final.watermark == Watermark(0, total)
