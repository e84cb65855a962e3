"""Timings and the Markdown report the benchmarks write (``benchmark_reports/foundation.md``).

Figures are only comparable within one run on one machine, so every run writes its block headed
by the machine, the row count and the date. The file keeps one block per row count: a run replaces
its own block and leaves the others, so the default run and a 10M run can sit side by side.
"""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

TITLE = "# Foundation benchmarks"
INTRO = (
    "Run with `.venv/bin/pytest -m benchmark -s metric_platform_tests/benchmarks` "
    "(`METRIC_PLATFORM_BENCH_ROWS=10000000` for 10M rows). Times are medians of repeated runs "
    "after one warm-up; ratios compare contenders measured in the same run on the same data."
)
_BLOCK = re.compile(r"<!-- run rows=(\d+) -->\n.*?<!-- end run -->\n", re.DOTALL)


@dataclass(frozen=True)
class Timing:
    """Wall-clock samples of one measurement, in seconds."""

    samples: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) * 1e3

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.samples)  # nearest rank: an observed value, never an interpolation
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] * 1e3


def measure(
    fn: Callable[[], T], *, reps: int, warmup: int = 1, setup: Callable[[], object] | None = None
) -> tuple[Timing, T]:
    """Time ``fn`` ``reps`` times after ``warmup`` untimed calls; ``setup`` runs untimed before each.

    Returns the timing and the last result, so the caller can check what was timed is right.
    """
    if reps < 1:
        msg = f"measure needs reps >= 1, got {reps}"
        raise ValueError(msg)
    samples = []
    for i in range(warmup + reps):
        if setup is not None:
            setup()
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            samples.append(elapsed)
    return Timing(tuple(samples)), result


def ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def ratio(value: float, reference: float | None) -> str:
    return "—" if reference is None or reference <= 0 else f"{value / reference:.2f}x"


@dataclass(frozen=True)
class Table:
    """One section of the report: a title, a Markdown table and notes under it."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()

    def to_markdown(self) -> str:
        lines = [f"### {self.title}", "", _row(self.header), _row(tuple("---" for _ in self.header))]
        lines += [_row(row) for row in self.rows]
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def machine_info() -> dict[str, str]:
    """What the figures depend on: CPUs this process may use, RAM, interpreter and libraries."""
    import duckdb
    import polars as pl

    return {
        "cpus": str(len(os.sched_getaffinity(0))),
        "ram": _mem_total(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "duckdb": duckdb.__version__,
    }


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


class Report:
    """This run's sections; every :meth:`add` rewrites the run's block in the file at once, so
    an interrupted run still leaves the sections it finished."""

    def __init__(
        self,
        path: Path,
        *,
        rows: int,
        header: Mapping[str, str],
        title: str = TITLE,
        intro: str = INTRO,
        unit: str = "rows",
    ) -> None:
        self.path = path
        self.unit = unit  # what ``rows`` counts, in the block's heading
        self.title = title
        self.intro = intro
        self.rows = rows
        self.header = dict(header)
        self._tables: dict[str, Table] = {}

    def note(self, key: str, value: str) -> None:
        self.header[key] = value

    def add(self, table: Table) -> None:
        self._tables[table.title] = table
        self.write()

    def publish(
        self, title: str, header: tuple[str, ...], rows: Sequence[tuple[str, ...]], notes: tuple[str, ...]
    ) -> None:
        """Add a table built from its parts and echo it (``pytest -s`` shows it as it is measured)."""
        table = Table(title, header, tuple(rows), notes)
        self.add(table)
        print("\n" + table.to_markdown())

    def render_block(self) -> str:
        facts = [f"- {key}: {value}" for key, value in self.header.items()]
        body = "\n".join(table.to_markdown() for table in self._tables.values())
        return (
            f"<!-- run rows={self.rows} -->\n## {self.rows:,} {self.unit}\n\n"
            + "\n".join(facts)
            + "\n\n"
            + body
            + "<!-- end run -->\n"
        )

    def write(self) -> None:
        old = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
        blocks = {int(m.group(1)): m.group(0) for m in _BLOCK.finditer(old)}
        blocks[self.rows] = self.render_block()
        text = f"{self.title}\n\n{self.intro}\n\n" + "\n".join(blocks[rows] for rows in sorted(blocks))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.path)
