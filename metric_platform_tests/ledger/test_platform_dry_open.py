"""A dry run never converts a platform database it opens: a SQLite file in rollback-journal mode
(connecting normally would switch it to WAL, a write) is read through an in-memory stand-in."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from metric_platform import write_guard
from metric_platform.db import is_in_memory
from metric_platform.platform_db import open_platform_db


def test_a_dry_run_leaves_a_rollback_journal_sqlite_file_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "platform.sqlite"
    with sqlite3.connect(path) as conn:  # default journal mode: DELETE, not WAL
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
    before = path.read_bytes()

    with write_guard.dry_run():
        engine = open_platform_db(f"sqlite:///{path}")
        try:
            assert is_in_memory(engine)
        finally:
            engine.dispose()

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["platform.sqlite"]
