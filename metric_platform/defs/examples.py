"""A user's own asset over a metric family, as a data engineer would write it (issue 6 item 6):
it declares the family's cache-hint grain as an input, receives the frame the engine serves
(``EngineInputManager``), computes with Polars, and is persisted by dagster-polars'
``PolarsParquetIOManager``.

Shipped for the sample AC ``retail`` (revenue by region and month); an AC without that family and
grain has no example.
"""

# No ``from __future__ import annotations``: Dagster reads the input's annotation (pl.LazyFrame)
# at definition time to type the input.

import dagster as dg
import polars as pl

from metric_platform.semantics.spec import AnalyticalContext

ENGINE_INPUT = "metric_engine"
PARQUET_IO = "polars_parquet"
_SOURCE = ("revenue", ("region", "month"))


def revenue_share_asset(ac: AnalyticalContext) -> dg.AssetsDefinition | None:
    family_name, grain = _SOURCE
    family = ac.families.get(family_name)
    if family is None or grain not in family.cache_grains:
        return None

    @dg.asset(
        key=[ac.name, "examples", "revenue_share_by_region_month"],
        group_name=ac.name,
        ins={
            "revenue_by_region_month": dg.AssetIn(
                key=[ac.name, family_name, *grain], input_manager_key=ENGINE_INPUT
            )
        },
        io_manager_key=PARQUET_IO,
        kinds={"polars", "parquet"},
        description="Each region's share of the month's revenue (an example user asset reading a "
        "metric family through the engine input manager).",
    )
    def revenue_share_by_region_month(revenue_by_region_month: pl.LazyFrame) -> pl.DataFrame:
        monthly = pl.col("revenue").sum().over("month")
        return (
            revenue_by_region_month.with_columns(share=pl.col("revenue") / monthly)
            .sort("month", "region")
            .collect()
        )

    return revenue_share_by_region_month
