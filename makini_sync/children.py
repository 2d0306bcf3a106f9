"""Child tables (purchase order line items) follow their parent's version.

Every child row carries the ``updated_at`` of the parent version it came
with. After a load, rows whose parent now holds a different version are left
over from an older version (a line removed when the order changed, or the
older copy of an order seen twice in one walk) and are deleted: no orphans.
"""

from __future__ import annotations

import logging

from typing import Any

from sources.makini.settings import CONNECTION_COLUMN, ID_COLUMN, UPDATED_AT_COLUMN, Entity

from .headroom import execute_with_headroom

logger = logging.getLogger(__name__)


def prune_superseded_children(client: Any, entities: list[Entity], loaded: set[str]) -> None:
    """Delete child rows that belong to a superseded parent version."""
    children = [(e, c) for e in entities for c in e.children if {e.table, c.table} <= loaded]
    if children:
        for entity, child in children:
            parent_t = client.make_qualified_table_name(entity.table)
            child_t = client.make_qualified_table_name(child.table)
            q = client.escape_column_name
            sql = (
                f"DELETE FROM {child_t} WHERE EXISTS (SELECT 1 FROM {parent_t} p"
                f" WHERE p.{q(CONNECTION_COLUMN)} = {child_t}.{q(CONNECTION_COLUMN)}"
                f" AND p.{q(ID_COLUMN)} = {child_t}.{q(child.parent_column)}"
                f" AND p.{q(UPDATED_AT_COLUMN)} <> {child_t}.{q(child.version_column)})"
            )
            execute_with_headroom(client, sql)
            logger.debug("pruned superseded rows of %s", child.table)
