"""Indexes on the merge keys, where the destination does not make them itself.

dlt creates no index for a compound primary key on PostgreSQL (its
``create_indexes`` covers single ``unique`` columns only), so every version
fence lookup, merge and tombstone sweep scans the whole table, which is where
reconcile spent most of its time (benchmarks/reconcile_benchmark.py). MySQL gets primary keys from dlt
(``create_primary_keys``); DuckDB and Snowflake scan fast enough without.
"""

from __future__ import annotations

from typing import Any, Iterable

from sources.makini.settings import CONNECTION_COLUMN, ID_COLUMN, Entity

from makini_sync.integrity.fence import TOMBSTONES

INDEXED_DESTINATIONS = frozenset({"postgres"})
MAX_INDEX_NAME = 63  # PostgreSQL's identifier length


def key_columns_by_table(entities: Iterable[Entity]) -> dict[str, tuple[str, ...]]:
    """Each table's lookup key: (connection, id) for entities, (connection, parent) for children."""
    keys: dict[str, tuple[str, ...]] = {TOMBSTONES: (CONNECTION_COLUMN, "entity", ID_COLUMN)}
    for entity in entities:
        keys[entity.table] = (CONNECTION_COLUMN, ID_COLUMN)
        for child in entity.children:
            keys[child.table] = (CONNECTION_COLUMN, child.parent_column)
    return keys


def ensure_key_indexes(sql_client: Any, destination_name: str, entities: Iterable[Entity], tables: set[str]) -> None:
    """Create the missing key index of each of ``tables`` (a no-op once it exists)."""
    if destination_name not in INDEXED_DESTINATIONS:
        return
    q = sql_client.escape_column_name
    for table, columns in key_columns_by_table(entities).items():
        if table not in tables:
            continue
        name = q(f"{table}__makini_key"[:MAX_INDEX_NAME])
        sql_client.execute_sql(
            f"CREATE INDEX IF NOT EXISTS {name} ON {sql_client.make_qualified_table_name(table)}"
            f" ({', '.join(q(c) for c in columns)})"
        )
