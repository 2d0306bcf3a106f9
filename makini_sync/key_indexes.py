"""Indexes on the merge keys where dlt creates none (PostgreSQL).

dlt creates PostgreSQL tables without an index on their primary key, so every
merge's delete (``WHERE EXISTS`` against the staging rows) and every webhook
batch's prune of superseded line items scanned whole tables: measured, a
1,000-event batch's post-load step took 0.08 s at 1k orders and 0.45 s at 9k,
and grew with the warehouse. With these indexes it stays at 0.03-0.05 s.
"""

from __future__ import annotations

from typing import Any, Sequence

from sources.makini.settings import CONNECTION_COLUMN, ID_COLUMN, Entity

from .fence import TOMBSTONES

INDEXED_DESTINATIONS = frozenset({"postgres"})


def key_index_specs(entities: Sequence[Entity]) -> list[tuple[str, tuple[str, ...]]]:
    """(table, columns) to index: each entity on its key, each child table on its
    parent key, and the tombstones (which every sweep joins) on theirs."""
    specs = [(TOMBSTONES, (CONNECTION_COLUMN, "entity", ID_COLUMN))]
    for entity in entities:
        specs.append((entity.table, (CONNECTION_COLUMN, ID_COLUMN)))
        specs.extend((child.table, (CONNECTION_COLUMN, child.parent_column)) for child in entity.children)
    return specs


def ensure_key_indexes(client: Any, entities: Sequence[Entity], tables: set[str]) -> None:
    """Create the missing key indexes of ``tables`` (a no-op once they exist)."""
    q = client.escape_column_name
    for table, columns in key_index_specs(entities):
        if table not in tables:
            continue
        name = q(f"{table}__merge_key"[:63])  # PostgreSQL's identifier limit
        client.execute_sql(
            f"CREATE INDEX IF NOT EXISTS {name} ON {client.make_qualified_table_name(table)} "
            f"({', '.join(q(c) for c in columns)})"
        )
