"""The store's lifecycle queries (seed 003 §10, §11; issue 4), mixed into ``EntryStore``.

Stale-slice listing, byte totals, eviction and request counts: what the engine's lifecycle asks
of the manifest. Kept apart from the store's core (publish, read, sweep) so that each module holds
one concept; the statements themselves live in ``eviction``, ``requests`` and ``slice_manifest``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from metric_platform.db import read_transaction, write_transaction
from metric_platform.engine.store import eviction, manifest, requests, slice_manifest
from metric_platform.engine.store.keys import Domain
from metric_platform.engine.store.records import (
    ByteTotals,
    Entry,
    EvictionResult,
    EvictionUnit,
    GrainRequests,
)
from metric_platform.engine.store.schema import engine_entries
from metric_platform.errors import InvalidRequestError


class LifecycleQueries:
    """Needs the store's manifest engine, data dir, grace period and clock (``EntryStore`` sets them)."""

    _engine: Engine
    _data_dir: Path
    _grace: timedelta

    def _now(self) -> datetime:
        raise NotImplementedError

    def list_provisional(
        self, ac_name: str, *, ended_by: date | None = None, domain: Domain | None = Domain.METRIC
    ) -> list[Entry]:
        """The AC's provisional slices; with ``ended_by`` (the current cutoff) only the stale ones.

        A slice is provisional when its bucket ended after the cutoff it was computed under, and
        stale once the current cutoff reaches the bucket's end (``slice_end <= ended_by``): the
        days it missed are stable now. ``domain=None`` lists both domains. Ordered by domain,
        dataset, anchor and slice day; read-only, one query on the provisional index.
        """
        with read_transaction(self._engine) as conn:
            rows = slice_manifest.select_provisional(conn, ac_name, ended_by=ended_by, domain=domain)
        return [manifest.row_to_entry(row, self._data_dir) for row in rows]

    def still_current(self, entries: Sequence[Entry]) -> list[Entry]:
        """Those of ``entries`` whose row still exists as they read it (same id, key, version, file).

        Tells an entry evicted or replaced meanwhile (retry the read) from one whose current file
        is really broken. Keeps the input order; one query.
        """
        for entry in entries:
            if not isinstance(entry, Entry):
                msg = (
                    f"still_current takes Entry values (from get or list_slices), got {type(entry).__name__}"
                )
                raise InvalidRequestError(msg)
        if not entries:
            return []
        c = engine_entries.c
        query = sa.select(engine_entries).where(c.id.in_(manifest.id_list(e.entry_id for e in entries)))
        with read_transaction(self._engine) as conn:
            rows = {int(row.id): row for row in conn.execute(query)}
        current: list[Entry] = []
        for entry in entries:
            row = rows.get(entry.entry_id)
            if row is None:
                continue
            stored = manifest.row_to_entry(row, self._data_dir)
            if (stored.key, stored.version, stored.path) == (entry.key, entry.version, entry.path):
                current.append(entry)
        return current

    def byte_totals(self, ac_name: str) -> ByteTotals:
        """The AC's manifest bytes: evictable (unpinned) and pinned, in one query."""
        with read_transaction(self._engine) as conn:
            return eviction.byte_totals(conn, ac_name)

    def eviction_units(self, ac_name: str, *, domain: Domain | None = None) -> list[EvictionUnit]:
        """What eviction can remove: the AC's unpinned rows grouped by base key and file. Read-only."""
        with read_transaction(self._engine) as conn:
            return eviction.eviction_units(conn, ac_name, domain=domain)

    def request_counts(
        self, ac_name: str, *, since: date, domain: Domain | None = None
    ) -> list[GrainRequests]:
        """Requests per grain on the UTC days >= ``since`` (``record_access(request=...)``); one GROUP BY."""
        with read_transaction(self._engine) as conn:
            return requests.totals(conn, ac_name, since=since, domain=domain)

    def prune_requests(self, ac_name: str, *, before: date) -> int:
        """Forget the AC's request counts of days before ``before`` (retention); returns rows deleted."""
        with write_transaction(self._engine) as conn:
            return requests.prune(conn, ac_name, before=before)

    def evict(
        self,
        ac_name: str,
        choose: Callable[[ByteTotals, list[EvictionUnit]], Sequence[EvictionUnit]],
        *,
        dry_run: bool = False,
    ) -> tuple[list[EvictionUnit], EvictionResult]:
        """Evict what ``choose`` picks from the AC's units, in ONE write transaction.

        ``choose(totals, units)`` is the eviction policy: pure and fast (it runs inside the
        transaction), returning some of ``units``. On PostgreSQL the AC's eviction lock is taken
        first, so a concurrent evictor waits and then chooses from what this one left: two
        evictors never both evict for one overshoot. The chosen rows still as read and unpinned
        are deleted (the others counted in ``rows_skipped``) and files no row references any more
        are retired: a LazyFrame planned before still collects for the grace period, and the sweep
        deletes them afterwards. ``dry_run`` reports the choice and what it would do, changing
        nothing. Returns the chosen units and the result.
        """
        if dry_run:
            with read_transaction(self._engine) as conn:
                chosen = self._choose(conn, ac_name, choose)
                result = eviction.delete_units(conn, ac_name, chosen, retire_after=self._now(), dry_run=True)
            return chosen, result
        retire_after = self._now() + self._grace
        with write_transaction(self._engine) as conn:
            eviction.lock_eviction(conn, ac_name)
            chosen = self._choose(conn, ac_name, choose)
            result = eviction.delete_units(conn, ac_name, chosen, retire_after=retire_after)
        return chosen, result

    def evict_units(self, units: Sequence[EvictionUnit]) -> EvictionResult:
        """Delete units chosen from an earlier ``eviction_units`` read, in one write transaction.

        As ``evict`` does after choosing: rows replaced, pinned or deleted since the read are
        skipped and counted; files left unreferenced are retired.
        """
        retire_after = self._now() + self._grace
        with write_transaction(self._engine) as conn:
            return eviction.delete_units(conn, None, units, retire_after=retire_after)

    @staticmethod
    def _choose(
        conn: Connection,
        ac_name: str,
        choose: Callable[[ByteTotals, list[EvictionUnit]], Sequence[EvictionUnit]],
    ) -> list[EvictionUnit]:
        totals = eviction.byte_totals(conn, ac_name)
        units = eviction.eviction_units(conn, ac_name, domain=None)
        return eviction.check_chosen(units, choose(totals, list(units)))
