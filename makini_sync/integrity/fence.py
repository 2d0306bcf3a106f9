"""The version fence: a stale delta never overwrites a newer row.

The rule, in one place (``is_stale``): a record's ``updated_at`` orders its
versions; a delta whose ``updated_at`` is older than the stored one is stale,
and an equal ``updated_at`` is the same version (applying it again changes
nothing, so it is skipped too). A hard delete leaves a tombstone whose
``updated_at`` is the time of deletion; a create or update not newer than the
tombstone is stale as well.

dlt's merge cannot express this (dlt issue #2145; ``upsert`` ignores
``dedup_sort``), so on SQL destinations the fence works in two halves:

* before a batch is loaded, ``SqlVersionFence.fresh`` reads the stored
  versions of the batch's keys and drops what is not newer (and its child
  rows); loads that use it hold the writer locks (``integrity/locking.py``) so no other writer slips a
  newer version in between the read and the load;
* after every load, ``sweep_tombstoned`` deletes rows (and child rows) that a
  tombstone at least as new covers, so a stale create that raced a delete
  cannot survive.

MongoDB enforces the same rule inside its upsert filter (``makini_sync.destinations.mongodb``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

import pyarrow as pa

from sources.makini.settings import CONNECTION_COLUMN, ID_COLUMN, UPDATED_AT_COLUMN, Entity

from makini_sync.integrity.pruning import Keys, key_filters
from makini_sync.destinations.headroom import execute_with_headroom

logger = logging.getLogger(__name__)

TOMBSTONES = "_makini_tombstones"
LOOKUP_CHUNK = 500


def is_stale(stored: Optional[datetime], incoming: datetime) -> bool:
    """True when ``incoming`` must not replace ``stored`` (older, or the same version)."""
    return stored is not None and as_utc(incoming) <= as_utc(stored)


def as_utc(value: datetime) -> datetime:
    """Destinations hand timestamps back naive (MySQL: UTC) or zoned: compare in UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def existing_tables(pipeline: Any, names: Iterable[str]) -> set[str]:
    """Which of ``names`` exist at the destination (asked of the destination itself:
    the sync and the webhook processor are separate pipelines sharing tables)."""
    with pipeline.destination_client() as client:
        return stored_tables(client, names)


def stored_tables(job_client: Any, names: Iterable[str]) -> set[str]:
    """Which of ``names`` exist at the destination, over an open job client."""
    try:
        return {n for n, columns in job_client.get_storage_tables(list(names)) if columns}
    except Exception as exc:  # noqa: BLE001 - no dataset yet (e.g. a MySQL database not created)
        logger.debug("no stored tables: %s", type(exc).__name__)
        return set()


def fenced_table_names(entities: Iterable[Entity]) -> list[str]:
    """Every table the fence and the sweeps look at, for ``entities``."""
    return [TOMBSTONES, *(name for e in entities for name in e.tables)]


class SqlVersionFence:
    """Drops rows of a batch that are not newer than what the destination stores."""

    def __init__(self, sql_client: Any, tables: set[str]) -> None:
        self.client = sql_client
        self.tables = tables

    def stored_versions(self, entity: Entity, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
        """Newest stored version (row or tombstone) per (connection_id, id)."""
        by_connection: dict[str, list[str]] = defaultdict(list)
        for connection_id, record_id in keys:
            by_connection[connection_id].append(record_id)
        stored: dict[tuple[str, str], datetime] = {}
        sources: list[tuple[str, Optional[str]]] = []  # (table, the entity whose tombstones it holds, or None)
        if entity.table in self.tables:
            sources.append((entity.table, None))
        if TOMBSTONES in self.tables:
            sources.append((TOMBSTONES, entity.table))
        q = self.client.escape_column_name
        for table, tombstone_of in sources:
            qualified = self.client.make_qualified_table_name(table)
            for connection_id, ids in by_connection.items():
                for start in range(0, len(ids), LOOKUP_CHUNK):
                    chunk = ids[start : start + LOOKUP_CHUNK]
                    sql = (
                        f"SELECT {q(ID_COLUMN)}, {q(UPDATED_AT_COLUMN)} FROM {qualified}"
                        f" WHERE {q(CONNECTION_COLUMN)} = %s"
                        + (f" AND {q('entity')} = %s" if tombstone_of else "")
                        + f" AND {q(ID_COLUMN)} IN ({', '.join(['%s'] * len(chunk))})"
                    )
                    args = [connection_id, *([tombstone_of] if tombstone_of else []), *chunk]
                    for record_id, updated_at in self.client.execute_sql(sql, *args) or []:
                        key = (connection_id, record_id)
                        stamp = as_utc(updated_at)
                        if key not in stored or stamp > stored[key]:
                            stored[key] = stamp
        return stored

    def fresh(self, entity: Entity, tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
        """The batch without stale rows; child rows follow their parent."""
        parent = tables.get(entity.table)
        if parent is None or parent.num_rows == 0 or not (
            {entity.table, TOMBSTONES} & self.tables
        ):
            return tables
        connections = parent[CONNECTION_COLUMN].to_pylist()
        ids = parent[ID_COLUMN].to_pylist()
        stamps = parent[UPDATED_AT_COLUMN].to_pylist()
        stored = self.stored_versions(entity, zip(connections, ids, strict=True))
        if not stored:
            return tables
        keep = [not is_stale(stored.get((c, i)), s) for c, i, s in zip(connections, ids, stamps, strict=True)]
        if all(keep):
            return tables
        logger.info("version fence dropped %d stale %s rows", keep.count(False), entity.table)
        result = {entity.table: parent.filter(pa.array(keep))}
        stale = {(c, i, s) for c, i, s, k in zip(connections, ids, stamps, keep, strict=True) if not k}
        for child in entity.children:
            rows = tables.get(child.table)
            if rows is None:
                continue
            child_keep = [
                (c, p, s) not in stale
                for c, p, s in zip(
                    rows[CONNECTION_COLUMN].to_pylist(),
                    rows[child.parent_column].to_pylist(),
                    rows[child.version_column].to_pylist(),
                    strict=True,
                )
            ]
            result[child.table] = rows.filter(pa.array(child_keep))
        return result


def sweep_tombstoned(sql_client: Any, entities: Iterable[Entity], tables: set[str], keys: Optional[Keys] = None) -> None:
    """Delete rows, and their child rows, covered by a tombstone at least as new.

    ``keys``: only these records' tombstones (a webhook batch's deletes);
    without keys every tombstone is checked.
    """
    if TOMBSTONES not in tables:
        return
    q = sql_client.escape_column_name
    tomb = sql_client.make_qualified_table_name(TOMBSTONES)
    for entity in entities:
        if keys is not None and not keys.get(entity.table):
            continue
        targets = [(entity.table, ID_COLUMN, UPDATED_AT_COLUMN)] + [
            (c.table, c.parent_column, c.version_column) for c in entity.children
        ]
        for table, id_column, version_column in targets:
            if table not in tables:
                continue
            target = sql_client.make_qualified_table_name(table)
            chosen = keys.get(entity.table) if keys is not None else None
            # the keys restrict the target rows too: without that PostgreSQL probes every row
            # of the table against the tombstones (benchmarks/reconcile_benchmark.py)
            for (condition, args), (on_target, target_args) in zip(
                    key_filters(sql_client, "d", chosen), key_filters(sql_client, target, chosen, id_column),
                    strict=True):
                execute_with_headroom(
                    sql_client,
                    f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {tomb} d"
                    f" WHERE d.{q('entity')} = %s AND d.{q(CONNECTION_COLUMN)} = {target}.{q(CONNECTION_COLUMN)}"
                    f" AND d.{q(ID_COLUMN)} = {target}.{q(id_column)}"
                    f" AND d.{q(UPDATED_AT_COLUMN)} >= {target}.{q(version_column)}{condition}){on_target}",
                    entity.table, *args, *target_args,
                )
