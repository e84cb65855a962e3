"""Checks a Parquet footer can answer without reading data: here, whether an unsigned 64-bit column
fits the Int64 every declared integer becomes.

Polars' cast of a UInt64 above 2**63 - 1 fails only inside ``collect``, which for an ``aggregate``
or ``extract_to_lazyframe`` LazyFrame happens in the caller, as a raw ``InvalidOperationError``. The
row groups' max statistics tell the same at plan time, for the cost of reading the footers. Without
statistics nothing is known cheaply, and the cast still fails at ``collect``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped]

from metric_platform.errors import SourceError
from metric_platform.semantics.spec import SchemaSpec

INT64_MAX = 2**63 - 1


def check_int64_range(path: Path, spec: SchemaSpec, column: str) -> None:
    """Raise SourceError when a row group's statistics show a value of ``column`` above Int64."""
    physical = spec.physical(column)
    for file in _files(path):
        largest = _max_statistic(file, physical)
        if largest is not None and largest > INT64_MAX:
            msg = (
                f"schema {spec.name!r}: column {column!r} of {file} is an unsigned 64-bit integer holding "
                f"{largest}, above the integer (Int64) range; store it as Int64 or declare it float in the AC"
            )
            raise SourceError(msg)


def _files(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
    else:
        yield from sorted(p for p in path.rglob("*.parquet") if p.is_file())


def _max_statistic(file: Path, physical: str) -> int | None:
    try:
        metadata: Any = pq.ParquetFile(file).metadata
    except (OSError, ValueError):
        return None  # unreadable footers are reported by the scan itself
    index = _column_index(metadata, physical)
    if index is None:
        return None
    largest: int | None = None
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max:
            continue
        value = int(stats.max)
        largest = value if largest is None else max(largest, value)
    return largest


def _column_index(metadata: Any, physical: str) -> int | None:
    schema = metadata.schema
    for index in range(len(schema)):
        if schema.column(index).path == physical:
            return index
    return None
