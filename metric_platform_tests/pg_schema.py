"""A throwaway PostgreSQL schema: an empty database for one test, tables of others out of sight."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from metric_platform.db import create_db_engine, write_transaction


@contextmanager
def fresh_pg_schema(pg_url: str) -> Iterator[str]:
    """The URL of a new, empty schema in the session database; the schema is dropped afterwards."""
    schema = f"mp_{uuid.uuid4().hex[:10]}"
    admin = create_db_engine(pg_url)
    with write_transaction(admin) as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        url = sa.engine.make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with write_transaction(admin) as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
