"""A dry run from Dagster (issue 6 item 8): a job, not an asset, so it records no materialization.

It serves a family at a grain over a day range through the execution door under the dry-run guard:
the real computation runs and nothing is written (no engine entry, no ledger event); the step's
output metadata shows what was served and which writes were suppressed. The job carries the tag
``metric_platform/dry_run`` so the ledger's run-status sensors skip it.
"""

# No ``from __future__ import annotations``: Dagster reads the op's ``context``/``config``
# annotations at definition time.

import datetime as dt

import dagster as dg
from pydantic import Field

from metric_platform.backends.protocol import DateWindow
from metric_platform.defs.door import Door, raise_on_failure
from metric_platform.defs.ledger_sensors import DRY_RUN_TAG
from metric_platform.defs.metadata import materialization_metadata

JOB_NAME = "metric_dry_run"


class DryRunConfig(dg.Config):
    """What to serve: an AC's family at a grain (default: its base grain) over [start, end]
    (ISO days; default: the AC's whole range up to yesterday)."""

    ac: str
    family: str
    anchor: list[str] = Field(default_factory=list)
    start: str | None = None
    end: str | None = None


def dry_run_job(door: Door) -> dg.JobDefinition:
    @dg.op(name="dry_run_serve", description="Serve through the engine and write nothing.")
    def dry_run_serve(context: dg.OpExecutionContext, config: DryRunConfig) -> dg.Output[None]:
        if config.ac not in door.workspaces:
            known = ", ".join(sorted(door.workspaces)) or "none"
            raise dg.Failure(description=f"unknown AC {config.ac!r}; known ACs: {known}")
        ac = door.workspace(config.ac).ac
        full = door.whole_range(ac.name)
        window = DateWindow(_day(config.start, "start") or full.start, _day(config.end, "end") or full.end)
        params = {"family": config.family, "anchor": list(config.anchor), "figures": True}
        if config.family in ac.families and not config.anchor:
            params["anchor"] = list(ac.families[config.family].base_grain)
        result = door.execute(context, ac.name, "engine.serve", params, window=window, dry_run=True)
        raise_on_failure(result)
        suppressed = dict(result.suppressed or {})
        metadata = materialization_metadata(result)
        metadata["writes_suppressed"] = dg.MetadataValue.json(suppressed)
        context.log.info(f"dry run: nothing written; suppressed writes {suppressed}")
        return dg.Output(None, metadata=metadata)

    @dg.job(
        name=JOB_NAME, tags={DRY_RUN_TAG: "true"}, description=__doc__.splitlines()[0] if __doc__ else None
    )
    def _job() -> None:
        dry_run_serve()

    return _job


def _day(text: str | None, field: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        msg = f"config {field} {text!r} is not a day; write it as YYYY-MM-DD, e.g. 2026-11-01"
        raise dg.Failure(description=msg, allow_retries=False) from None
