"""The Makini entity table: everything entity-specific is data here, not code.

Field names differ between Makini deployments (v3 says ``key``/``updatedAt``/
``lineItems``, v4 says ``id``/``_updatedAt``/``_deletedAt``). Supporting such a
deployment, or a new entity, is one row of ``ENTITIES`` or of dlt config (``entity_config.py``): the source reads the
API's field names from the row and writes the warehouse's canonical names
(``id``, ``updated_at``, ``deleted_at``), so every table, the version fence and
the webhook processor see one shape whatever the deployment calls its fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

API_PREFIX = "/api/v1"

# Canonical warehouse column names shared by every table.
CONNECTION_COLUMN = "connection_id"
ID_COLUMN = "id"
UPDATED_AT_COLUMN = "updated_at"
DELETED_AT_COLUMN = "deleted_at"

# Nested objects kept as one JSON column rather than flattened: their keys
# differ per connection and are chosen by customers, so they never become
# column identifiers (which also keeps hostile keys out of DDL).
JSON_FIELDS = frozenset({"custom_fields"})


@dataclass(frozen=True)
class ChildTable:
    """An array field of an entity that lands in its own table."""

    field: str  # the API's field name, e.g. "line_items"
    table: str  # warehouse table, e.g. "purchase_orders__line_items"
    key: str  # the child's key within its parent, e.g. "line_number"
    parent_column: str  # e.g. "purchase_order_id"

    @property
    def version_column(self) -> str:
        """Holds the parent's ``updated_at`` the line came with, e.g.
        ``purchase_order_updated_at``: a line whose version differs from its
        parent's is left over from an older version and is pruned."""
        return self.parent_column.removesuffix("_id") + "_updated_at"


@dataclass(frozen=True)
class Entity:
    """One Makini list endpoint and how its records map to warehouse tables."""

    table: str
    path: str
    max_page_size: int
    primary_key: str = "id"
    updated_at: str = "updated_at"
    deleted_at: str = "deleted_at"
    children: tuple[ChildTable, ...] = ()
    # Warehouse types for fields whose JSON type alone is ambiguous
    # (an integer-looking quantity on one page, a fraction on the next).
    column_types: Mapping[str, str] = field(default_factory=dict)
    # API field -> warehouse column, for a deployment that names fields its own way
    renames: Mapping[str, str] = field(default_factory=dict)

    @property
    def tables(self) -> tuple[str, ...]:
        """The warehouse tables the entity writes: its own, then its children's."""
        return (self.table, *(c.table for c in self.children))

    @property
    def slug(self) -> str:
        """The path's last segment: the entity's name in webhooks and the control API."""
        return self.path.rsplit("/", 1)[-1]


ENTITIES: dict[str, Entity] = {
    e.table: e
    for e in (
        Entity(
            table="purchase_orders",
            path=f"{API_PREFIX}/purchase-orders",
            max_page_size=500,
            children=(
                ChildTable(
                    field="line_items",
                    table="purchase_orders__line_items",
                    key="line_number",
                    parent_column="purchase_order_id",
                ),
            ),
            column_types={
                "quantity": "double",
                "line_number": "bigint",
                "order_date": "date",
                "required_date": "date",
                "delivery_date": "date",
            },
        ),
        Entity(
            table="work_orders",
            path=f"{API_PREFIX}/work-orders",
            max_page_size=250,
            column_types={"scheduled_start": "date", "scheduled_end": "date"},
        ),
        Entity(table="assets", path=f"{API_PREFIX}/assets", max_page_size=500),
        Entity(
            table="inventory_items",
            path=f"{API_PREFIX}/inventory-items",
            max_page_size=500,
            column_types={"quantity_on_hand": "double"},
        ),
        Entity(table="vendors", path=f"{API_PREFIX}/vendors", max_page_size=100),
    )
}


# The load contract: how every entity table and child table is written. The
# walk, the deltas path and reconcile all load through these hints, so a row
# lands the same way whichever of them brought it.


# Key columns get a length so that databases which cannot index unbounded
# text (MySQL/MariaDB primary keys) index them as VARCHAR.
KEY_LENGTHS = {CONNECTION_COLUMN: 64, ID_COLUMN: 255, "entity": 64, "table_name": 128, "column_name": 255}


def key_columns(*names: str) -> dict[str, dict]:
    return {n: {"data_type": "text", "precision": KEY_LENGTHS.get(n, 255), "nullable": False} for n in names}


