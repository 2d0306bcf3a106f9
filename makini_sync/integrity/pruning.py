"""Child tables (purchase order line items) follow their parent's version.

Every child row carries the ``updated_at`` of the parent version it came
with. After a load, rows whose parent now holds a different version are left
over from an older version (a line removed when the order changed, or the
older copy of an order seen twice in one walk) and are deleted: no orphans.
"""

from __future__ import annotations

import logging

from typing import Any, Iterator, Optional

from sources.makini.settings import CONNECTION_COLUMN, ID_COLUMN, UPDATED_AT_COLUMN, Entity

from makini_sync.destinations.headroom import execute_with_headroom

logger = logging.getLogger(__name__)

KEY_CHUNK = 500  # ids per statement


Keys = dict[str, dict[str, list[str]]]  # entity table -> connection -> record ids


def key_filters(client: Any, alias: str, keys: Optional[dict[str, list[str]]],
                id_column: str = ID_COLUMN) -> Iterator[tuple[str, list]]:
    """SQL conditions (with their arguments) restricting ``alias`` to ``keys``:
    one per connection and chunk of ids; a single empty condition without keys.
    ``id_column``: the column holding the ids (a child table's parent column)."""
    if keys is None:
        yield "", []
        return
    q = client.escape_column_name
    for connection_id, ids in keys.items():
        for start in range(0, len(ids), KEY_CHUNK):
            chunk = ids[start : start + KEY_CHUNK]
            yield (
                f" AND {alias}.{q(CONNECTION_COLUMN)} = %s AND {alias}.{q(id_column)} IN ({', '.join(['%s'] * len(chunk))})",
                [connection_id, *chunk],
            )


def prune_superseded_children(client: Any, entities: list[Entity], loaded: set[str], keys: Optional[Keys] = None) -> None:
    """Delete child rows that belong to a superseded parent version.

    ``keys``: only the children of these parents (a webhook batch knows what it
    touched; a whole-table pass per batch would grow with the warehouse).
    Without keys (the sync, once per load) every child row is checked, so a
    pass missed by a crash is made up by the next one.
    """
    children = [(e, c) for e in entities for c in e.children if {e.table, c.table} <= loaded]
    for entity, child in children:
        if keys is not None and not keys.get(entity.table):
            continue
        parent_t = client.make_qualified_table_name(entity.table)
        child_t = client.make_qualified_table_name(child.table)
        q = client.escape_column_name
        for condition, args in key_filters(client, "p", keys.get(entity.table) if keys is not None else None):
            sql = (
                f"DELETE FROM {child_t} WHERE EXISTS (SELECT 1 FROM {parent_t} p"
                f" WHERE p.{q(CONNECTION_COLUMN)} = {child_t}.{q(CONNECTION_COLUMN)}"
                f" AND p.{q(ID_COLUMN)} = {child_t}.{q(child.parent_column)}"
                f" AND p.{q(UPDATED_AT_COLUMN)} <> {child_t}.{q(child.version_column)}{condition})"
            )
            execute_with_headroom(client, sql, *args)
        logger.debug("pruned superseded rows of %s", child.table)
