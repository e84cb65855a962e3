"""The independent oracle for the retail sample: DuckDB SQL written by hand over the Parquet files.

Nothing here comes from the engine or the backends' planner: the joins, the filter, the calendar
buckets and each family's reducer with its missing-value treatment are spelled out as SQL text from
reading ``data/acs/retail.yaml``, so a bug in the shared machinery shows up as a disagreement.
"""

from __future__ import annotations

import duckdb
import polars as pl

from metric_platform.backends.protocol import DateWindow
from metric_platform_tests.engine.gate.conftest import Sample
from metric_platform_tests.engine.gate.queries import Query, derived_dtypes

# dimension -> its SQL over `t` (transactions) LEFT JOIN `s` (stores), `c` (campaigns)
DIMENSIONS = {
    "store": "t.store_id",
    "region": "s.region",
    "campaign": "t.campaign_id",
    "channel": "c.channel",
    "customer": "t.customer_id",
    "day": "t.event_date",
    **{g: f"CAST(date_trunc('{g}', t.event_date) AS DATE)" for g in ("week", "month", "quarter", "year")},
}


def propagate(agg: str, column: str) -> str:
    return f"CASE WHEN count(t.{column}) < count(*) THEN NULL ELSE {agg}(t.{column}) END"


# family -> (its reducer under the AC's own missing-value treatment, result dtype)
FAMILIES: dict[str, tuple[str, pl.DataType]] = {
    "revenue": ("sum(t.revenue)", pl.Float64()),  # skip
    "spend": ("sum(coalesce(t.spend, 0.0))", pl.Float64()),  # impute 0.0
    "conversions": (propagate("sum", "conversions"), pl.Int64()),  # propagate
    "transaction_count": ("count(t.txn_id)", pl.Int64()),
    "largest_sale": ("max(t.revenue)", pl.Float64()),
    "any_returned": ("bool_or(t.is_returned)", pl.Boolean()),
    "average_sale": ("avg(t.revenue)", pl.Float64()),
    "unique_customers": ("count(DISTINCT t.customer_id)", pl.Int64()),
}
_TIME = {"day", "week", "month", "quarter", "year"}


def dimension_dtype(dimension: str) -> pl.DataType:
    return pl.Date() if dimension in _TIME else pl.String()


class RetailOracle:
    def __init__(self, sample: Sample) -> None:
        self._con = duckdb.connect()
        for table in ("transactions", "stores", "campaigns"):
            self._con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{sample.parquet(table)}')")

    def close(self) -> None:
        self._con.close()

    def metric_sql(
        self, family: str, anchor: tuple[str, ...], window: DateWindow, *, reducer: str | None = None
    ) -> str:
        """One family at ``anchor`` over ``window``; ``reducer`` replaces the family's (an mvt override)."""
        keys = [f'{DIMENSIONS[d]} AS "{d}"' for d in anchor]
        value = reducer or FAMILIES[family][0]
        query = (
            f"SELECT {', '.join([*keys, f'{value} AS {family}'])} FROM transactions t "
            "LEFT JOIN stores s ON t.store_id = s.store_id "
            "LEFT JOIN campaigns c ON t.campaign_id = c.campaign_id "
            "WHERE t.tenant_id = 'acme' "
            f"AND t.event_date BETWEEN DATE '{window.start}' AND DATE '{window.end}'"
        )
        if anchor:
            query += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(anchor)))
        return query

    def metric(
        self, family: str, anchor: tuple[str, ...], window: DateWindow, *, reducer: str | None = None
    ) -> pl.DataFrame:
        return self.frame(
            self.metric_sql(family, anchor, window, reducer=reducer), {family: FAMILIES[family][1]}
        )

    def frame(self, sql: str, values: dict[str, pl.DataType]) -> pl.DataFrame:
        """Run ``sql``; dimension columns get their dtypes by name, the others from ``values``."""
        out: pl.DataFrame = self._con.sql(sql).pl()
        return out.select(
            pl.col(c).cast(values[c] if c in values else dimension_dtype(c)) for c in out.columns
        )

    def composed_sql(self, metrics: tuple[str, ...], grain: tuple[str, ...], window: DateWindow) -> str:
        """``WITH`` the metrics, each at ``grain``, joined on every grain value any of them has, NULL
        keys matching NULL keys; the relation ``joined`` holds the grain and the metric columns."""
        ctes = [f"m_{m} AS ({self.metric_sql(m, grain, window)})" for m in metrics]
        if not grain:
            joined = "SELECT * FROM " + " CROSS JOIN ".join(f"m_{m}" for m in metrics)
        else:
            columns = ", ".join(f'"{d}"' for d in grain)
            keys = " UNION ".join(f"SELECT {columns} FROM m_{m}" for m in metrics)
            ctes.append(f"k AS ({keys})")
            joins = " ".join(
                f"LEFT JOIN m_{m} ON "
                + " AND ".join(f'k."{d}" IS NOT DISTINCT FROM m_{m}."{d}"' for d in grain)
                for m in metrics
            )
            selected = ", ".join([*(f'k."{d}"' for d in grain), *(f"m_{m}.{m}" for m in metrics)])
            joined = f"SELECT {selected} FROM k {joins}"
        ctes.append(f"joined AS ({joined})")
        return "WITH " + ", ".join(ctes) + " "

    def query(self, query: Query) -> pl.DataFrame:
        """What the compose query must return."""
        request = query.request
        assert request.window is not None, "gate queries carry explicit windows"
        sql = self.composed_sql(request.metrics, request.grain, request.window) + query.sql
        return self.frame(sql, {m: FAMILIES[m][1] for m in request.metrics} | derived_dtypes(query))
