"""The main job, run by the README's first command: everything a fresh clone can do end to end.

At this stage: make sure a fresh sample exists (ending yesterday, so recent days sit inside the
hold-off window), validate every AC under ``data/acs/``, profile each AC's source schemas through
the engine's QM domain, serve each metric family once at its base grain, and print what was done.
The committed sample (``data/sample/``) is never modified: ACs reading it are pointed at the
fresh copy under the platform home.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from metric_platform.backends.factory import backend_for
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.store.keys import Domain
from metric_platform.errors import ConfigError, ConfigIssue
from metric_platform.sample_data import SampleSpec, ensure_sample
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext, SourceKind
from metric_platform.settings import Settings


@dataclass(frozen=True)
class MainJobReport:
    acs: tuple[str, ...]
    schemas_profiled: int
    columns_profiled: int
    families_served: int
    seconds: float


def _load(path: Path, fresh_sample: Path, committed: Path) -> AnalyticalContext:
    ac = load_ac(path)
    reads_committed = (
        ac.source.kind is SourceKind.PARQUET
        and ac.source.path is not None
        and ac.source.path == committed.resolve()
    )
    return load_ac(path, source_path=fresh_sample) if reads_committed else ac


def run_main_job(
    *,
    acs_dir: Path = Path("data") / "acs",
    settings: Settings | None = None,
    sample: SampleSpec | None = None,
    committed_sample: Path | None = None,
    out: Callable[[str], None] = print,
) -> MainJobReport:
    """``committed_sample`` defaults to the ``sample`` directory beside ``acs_dir`` (``data/sample``)."""
    settings = settings or Settings()
    committed = committed_sample if committed_sample is not None else acs_dir.parent / "sample"
    started = time.perf_counter()
    ac_files = sorted(acs_dir.glob("*.yaml"))
    if not ac_files:
        msg = f"no analytical contexts (*.yaml) in {acs_dir}; point --acs at a directory of AC files"
        raise ConfigError([ConfigIssue(str(acs_dir), "", msg, "create one from data/acs/retail.yaml")])
    sample_dir = settings.home / "sample"
    written, meta = ensure_sample(sample_dir, sample or SampleSpec())
    verb = "generated" if written else "reused"
    out(
        f"sample data {verb}: {sample_dir} "
        f"({meta['rows']} transactions, {meta['days']} days to {meta['end_date']})"
    )

    names: list[str] = []
    schemas = columns = families = 0
    for path in ac_files:
        ac = _load(path, sample_dir, committed)
        names.append(ac.name)
        out(
            f"\nAC {ac.name!r} valid ({path}): {len(ac.schemas)} schemas, {len(ac.dimensions)} dimensions, "
            f"{len(ac.families)} metric families; source {ac.source.identity}"
        )
        backend = backend_for(ac)
        engine = MetricEngine.open(ac, settings)
        try:
            for schema in ac.schemas:
                before = len(engine.entries(Domain.QM))
                profile = engine.table_profile(schema, backend=backend)
                computed = len(engine.entries(Domain.QM)) - before
                schemas += 1
                columns += len(profile.columns)
                out(
                    f"  profiled {schema}: {profile.row_count} rows, {len(profile.columns)} columns "
                    f"({computed} computed, {len(profile.columns) - computed} from the engine's memory)"
                )
            # Days that crossed the stability cutoff since the last run are recomputed first.
            refreshed = engine.refresh(backend=backend)
            out(
                f"  refreshed {refreshed.recomputed} stale slice(s) under the stability cutoff "
                f"{refreshed.cutoff} ({refreshed.backend_calls} backend calls)"
            )
            for family in ac.families.values():
                families += 1
                for grain in dict.fromkeys((family.base_grain, *family.cache_grains)):
                    served = engine.serve_metric(family.name, grain, backend=backend)
                    rows = served.frame.select(pl.len()).collect().item()
                    out(
                        f"  served {family.name} at [{', '.join(grain)}]: {rows} rows — "
                        f"{served.provenance.path.describe()}"
                    )
            totals = engine.store.byte_totals(ac.name)
            out(
                f"  store: {totals.evictable} evictable and {totals.pinned} pinned bytes "
                f"(budget {settings.max_bytes_per_ac} per AC)"
            )
            # Files retired by replacements (past their grace) and orphans of crashed writers.
            swept = engine.store.sweep(ac_name=ac.name)
            out(
                f"  swept the store: {swept.files_deleted} retired and {swept.orphans_deleted} orphaned "
                f"files removed ({swept.bytes_freed} bytes)"
            )
        finally:
            engine.close()
            backend.close()
    seconds = time.perf_counter() - started
    out(
        f"\nmain job done in {seconds:.1f}s: {len(names)} AC(s), {schemas} schemas / {columns} columns "
        f"profiled, {families} families served; engine store under {settings.home}"
    )
    return MainJobReport(tuple(names), schemas, columns, families, seconds)
