"""The analytical contexts of an installation: every AC file under one directory, and fresh samples.

The committed samples (``data/sample/``, ``data/sample_globex/``: Parquet directories holding the
generator's ``sample.json``) are small and end on a fixed day, so recent days would never sit in a
hold-off window. The main job therefore makes a fresh copy of each one the ACs read, ending
yesterday, under ``home/samples/<committed dir name>`` (:func:`ensure_fresh_samples`), and every
reader of the ACs (:func:`load_acs`: the main job, the Dagster code location) points an AC that
reads a committed sample at its fresh copy once that exists. The committed files are never
modified.

:func:`load_acs` never generates anything: the Dagster code location calls it at load time, which
must stay fast and free of side effects. Before the first main job an AC reads its committed sample.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from metric_platform.errors import ConfigError, ConfigIssue, InvalidRequestError, SourceError
from metric_platform.sample_data import (
    METADATA_FILE,
    SampleSpec,
    complete_sample,
    ensure_sample,
    read_metadata,
)
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext, SourceKind
from metric_platform.settings import Settings

_AC_GLOB = "*.yaml"


@dataclass(frozen=True)
class SampleCopy:
    """A committed sample and its fresh copy; ``written`` is False when the copy already existed
    (it is kept, whatever its end day: its memoized entries were computed from it)."""

    committed: Path
    fresh: Path
    written: bool
    meta: Mapping[str, Any]


def ac_files(acs_dir: Path) -> list[Path]:
    """The AC files (``*.yaml``) in ``acs_dir``, sorted by name (the order ACs are loaded and run in)."""
    files = sorted(acs_dir.glob(_AC_GLOB)) if acs_dir.is_dir() else []
    if not files:
        state = "is not a directory" if not acs_dir.is_dir() else f"holds no analytical contexts ({_AC_GLOB})"
        issue = ConfigIssue(
            str(acs_dir),
            "",
            f"{acs_dir} {state}",
            "point at a directory of AC files (e.g. data/acs), or create one from data/acs/retail.yaml",
        )
        raise ConfigError([issue])
    return files


def fresh_sample_dir(settings: Settings, committed: Path) -> Path:
    """Where the fresh copy of the committed sample ``committed`` lives (one per installation)."""
    return settings.home / "samples" / committed.name


def committed_sample(ac: AnalyticalContext) -> Path | None:
    """The sample directory the AC reads, when its source is a Parquet directory holding the
    generator's ``sample.json``; None for any other source."""
    path = ac.source.path
    if ac.source.kind is not SourceKind.PARQUET or path is None:
        return None
    return path if (path / METADATA_FILE).is_file() else None


def ensure_fresh_samples(
    acs_dir: Path, settings: Settings, *, spec: SampleSpec | None = None, today: date | None = None
) -> list[SampleCopy]:
    """Make sure every committed sample the ACs under ``acs_dir`` read has a fresh copy.

    A copy keeps the committed sample's identity (seed, tenant, project) and its chain (stores,
    campaigns), so the same AC filter selects it; its volume (rows, days) and end day come from
    ``spec`` (default :class:`SampleSpec`: ending the day before ``today``). One copy per committed
    directory, however many ACs read it; an existing complete copy is reused (``ensure_sample``).
    """
    base = spec or SampleSpec()
    copies: list[SampleCopy] = []
    for committed in _committed_samples(acs_dir, settings):
        fresh = fresh_sample_dir(settings, committed)
        meta = read_metadata(committed)
        assert meta is not None  # _committed_samples only yields directories holding sample.json
        written, fresh_meta = ensure_sample(fresh, _fresh_spec(base, committed, meta), today=today)
        copies.append(SampleCopy(committed, fresh, written, fresh_meta))
    return copies


def load_acs(acs_dir: Path, settings: Settings) -> list[AnalyticalContext]:
    """Every AC under ``acs_dir``, validated; an AC reading a committed sample reads its fresh copy
    when a complete one exists. Every file's problems are reported together, in one ConfigError."""
    acs: list[AnalyticalContext] = []
    issues: list[ConfigIssue] = []
    files: dict[str, Path] = {}
    for path in ac_files(acs_dir):
        try:
            ac = _load(path, settings)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        if ac.name in files:
            # Names key asset groups and a shared engine store's entries: two ACs must not share one.
            issues.append(
                ConfigIssue(
                    str(path),
                    "name",
                    f"AC name {ac.name!r} is already used by {files[ac.name]}",
                    "give every AC under one directory its own name",
                )
            )
            continue
        try:  # the engine home is named by tenant and project: say so here, with the file
            settings.for_project(ac.tenant_id, str(ac.project_id))
        except InvalidRequestError as exc:
            issues.append(ConfigIssue(str(path), "tenant_id", str(exc), "rename the tenant"))
            continue
        files[ac.name] = path
        acs.append(ac)
    if issues:
        raise ConfigError(issues)
    return acs


def _load(path: Path, settings: Settings) -> AnalyticalContext:
    ac = load_ac(path)
    committed = committed_sample(ac)
    if committed is None:
        return ac
    fresh = fresh_sample_dir(settings, committed)
    if fresh.resolve() == committed or complete_sample(fresh) is None:
        return ac
    return load_ac(path, source_path=fresh)


def _committed_samples(acs_dir: Path, settings: Settings) -> list[Path]:
    """The distinct committed sample directories the ACs read, in AC file order."""
    found: dict[Path, Path] = {}  # fresh copy -> committed sample
    issues: list[ConfigIssue] = []
    for path in ac_files(acs_dir):
        committed = committed_sample(load_ac(path))
        if committed is None:
            continue
        fresh = fresh_sample_dir(settings, committed).resolve()
        if fresh == committed:  # the AC already reads a fresh copy
            continue
        seen = found.setdefault(fresh, committed)
        if seen != committed:
            issues.append(
                ConfigIssue(
                    str(path),
                    "source.path",
                    f"the samples {seen} and {committed} would share the fresh copy {fresh}",
                    "give every committed sample directory its own name",
                )
            )
    if issues:
        raise ConfigError(issues)
    return list(found.values())


def _fresh_spec(base: SampleSpec, committed: Path, meta: Mapping[str, Any]) -> SampleSpec:
    ints = {key: meta.get(key) for key in ("seed", "stores", "campaigns")}
    strs = {key: meta.get(key) for key in ("tenant_id", "project_id")}
    bad = [k for k, v in ints.items() if not isinstance(v, int) or isinstance(v, bool)]
    bad += [k for k, v in strs.items() if not isinstance(v, str)]
    if bad:
        msg = (
            f"{committed / METADATA_FILE} lacks {', '.join(bad)} (or holds the wrong type); regenerate the "
            "committed sample with the generator (sample_data.COMMITTED_SAMPLES) so its copy can be made"
        )
        raise SourceError(msg)
    return dataclasses.replace(
        base,
        seed=int(meta["seed"]),
        stores=int(meta["stores"]),
        campaigns=int(meta["campaigns"]),
        tenant_id=str(meta["tenant_id"]),
        project_id=str(meta["project_id"]),
    )
