"""QM profile assets for an AC's source schemas, with the asset checks derived from them (issue 6
item 7; the checks' meaning is in ``engine/qm/checks.py``).

``[ac, qm_profile, schema]`` profiles the schema through the engine's QM domain (``qm.profile``)
and evaluates its checks (``qm.checks``): null fractions of the key columns, distinct counts, and
each declared FD edge whose map the engine reads from the schema holding in the data. An edge check
is ERROR and blocking: it stops what depends on the profile in the same run, and in any run the
engine itself refuses a rollup along a violated edge (``FDViolationError``), so no grain asset can
publish numbers rolled up along it.
"""

# No ``from __future__ import annotations``: Dagster reads the body's ``context`` annotation.

from collections.abc import Iterator

import dagster as dg

from metric_platform.defs.door import Door, raise_on_failure
from metric_platform.defs.instance import POOL
from metric_platform.defs.metadata import summary_of
from metric_platform.defs.plan import PROFILE_PREFIX
from metric_platform.engine.qm.checks import CheckOutcome, planned_checks
from metric_platform.engine.qm.projections import TableProfile
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.works.quality import check_outcomes

# Source schemas are profiled once a day (the profile is a full scan; checks follow it).
PROFILE_CRON = "0 2 * * *"


def profile_key(ac: AnalyticalContext, schema: str) -> dg.AssetKey:
    return dg.AssetKey([ac.name, PROFILE_PREFIX, schema])


def _check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity(outcome.severity),
        description=outcome.description,
        metadata={
            key: dg.MetadataValue.json(value) if isinstance(value, dict | list) else value
            for key, value in outcome.metadata.items()
        },
    )


def profile_asset(ac: AnalyticalContext, schema: str, door: Door) -> dg.AssetsDefinition:
    key = profile_key(ac, schema)
    specs = [
        dg.AssetCheckSpec(
            planned.name, asset=key, blocking=planned.severity == "ERROR", description=planned.description
        )
        for planned in planned_checks(ac, schema)
    ]

    @dg.asset(
        key=key,
        group_name=ac.name,
        description=f"QM profile of source schema {schema!r} of AC {ac.name!r} (column statistics, "
        "memoized in the engine's QM domain), with its quality checks.",
        check_specs=specs,
        automation_condition=dg.AutomationCondition.on_cron(PROFILE_CRON),
        pool=POOL,
        kinds={"polars"},
        tags={"metric_platform/ac": ac.name, "metric_platform/tenant": ac.tenant_id},
    )
    def _profile(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult[None]]:
        profiled = door.execute(context, ac.name, "qm.profile", {"schema_name": schema})
        raise_on_failure(profiled)
        checked = door.execute(context, ac.name, "qm.checks", {"schema_name": schema}, step_suffix=":checks")
        raise_on_failure(checked)
        assert checked.outcome is not None
        summary = summary_of(profiled)
        value = profiled.outcome.value if profiled.outcome is not None else None
        profile = value if isinstance(value, TableProfile) else None  # None: answered from the ledger
        metadata: dict[str, dg.RawMetadataValue] = {
            "entries_computed": int(summary.get("entries_computed", 0)),
            "ledger_run": profiled.context.identity.run_id,
        }
        if profile is not None:
            metadata["dagster/row_count"] = dg.MetadataValue.int(int(profile.row_count))
            metadata["columns"] = len(profile.columns)
        yield dg.MaterializeResult(
            metadata=metadata, check_results=[_check_result(o) for o in check_outcomes(checked.outcome)]
        )

    return _profile


def profile_assets(ac: AnalyticalContext, door: Door) -> list[dg.AssetsDefinition]:
    return [profile_asset(ac, schema, door) for schema in ac.schemas]
