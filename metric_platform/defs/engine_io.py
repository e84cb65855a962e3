"""User assets read metric families as Polars frames, served by the engine (issue 6 item 6).

``EngineInputManager`` is the input manager of an ``AssetIn`` on a family asset (``[ac, family]``)
or a cache-hint grain asset (``[ac, family, grain…]``): the input is served through the execution
door for the days of the upstream partitions the step reads (all of them for an unpartitioned
downstream) and arrives as one ``pl.LazyFrame`` (or ``pl.DataFrame`` when the parameter says so) over
the whole window, not as dagster-polars' ``dict`` of one frame per partition: a metric family is
one frame whatever its partitions.

dagster-polars' path-based IO managers do not fit here: the family's data lives in the engine store
as memoized slices, not at a path per partition.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import polars as pl

from metric_platform.backends.protocol import DateWindow
from metric_platform.defs.door import Door, raise_on_failure
from metric_platform.engine.serving.types import Served
from metric_platform.errors import InternalError


class EngineInputManager(dg.IOManager):
    def __init__(self, door: Door) -> None:
        self._door = door

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        msg = (
            f"the engine input manager only loads metric families; {context.asset_key.to_user_string()} "
            "writes through the engine itself: give the asset another io_manager_key"
        )
        raise dg.DagsterInvariantViolationError(msg)

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame | pl.DataFrame:
        path = context.asset_key.path
        ac_name, family_name = path[0], path[1] if len(path) > 1 else ""
        if (
            ac_name not in self._door.workspaces
            or family_name not in self._door.workspace(ac_name).ac.families
        ):
            msg = (
                f"{context.asset_key.to_user_string()} is not a metric family asset ([ac, family] or "
                "[ac, family, grain…]); load it with the IO manager that wrote it"
            )
            raise dg.DagsterInvariantViolationError(msg)
        ac = self._door.workspace(ac_name).ac
        grain = tuple(path[2:]) or ac.families[family_name].base_grain
        window = self._door.whole_range(ac_name)
        if context.has_asset_partitions:
            span = context.asset_partitions_time_window
            window = DateWindow(span.start.date(), span.end.date() - dt.timedelta(days=1))
        retry = context.step_context.previous_attempt_count
        # A read: each step attempt serves afresh (the ledger would answer a repeated step from its
        # record, which holds no frame).
        suffix = f":input:{context.name}" + (f"@retry{retry}" if retry else "")
        result = self._door.execute(
            context,
            ac_name,
            "engine.serve",
            {"family": family_name, "anchor": list(grain)},
            window=window,
            step_suffix=suffix,
        )
        raise_on_failure(result)
        served = result.outcome.value if result.outcome is not None else None
        if not isinstance(served, Served):
            msg = f"the engine answered {context.asset_key.to_user_string()} without a frame"
            raise InternalError(msg)
        wants_eager = context.dagster_type.typing_type is pl.DataFrame
        return served.frame.collect() if wants_eager else served.frame
