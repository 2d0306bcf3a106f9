"""dlt's table hints for the source's tables: merged on their keys, child tables
apart from their parents, schema changes as rows of their own table.

Kept apart from the entity table (``settings.py``) and the column kinds
(``column_kinds.py``) so that what converts a page imports no dlt: a page
worker (``page_workers.py``) then costs its process less memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dlt
import pyarrow as pa

from .column_kinds import SCHEMA_CHANGE_KEY, SCHEMA_CHANGES_TABLE
from .settings import CONNECTION_COLUMN, ID_COLUMN, UPDATED_AT_COLUMN, Entity, key_columns

if TYPE_CHECKING:
    from dlt.common.schema.typing import TDeleteInsertStrategyDict

MERGE: TDeleteInsertStrategyDict = {"disposition": "merge", "strategy": "delete-insert"}


def entity_hints(entity: Entity) -> dict[str, Any]:
    """dlt table hints for the entity's table and each of its child tables.

    Every table gets its hints with its rows (rather than some on the
    resource) so that the parent's column hints do not leak into its children.
    """
    hints = {
        entity.table: dlt.mark.make_hints(
            table_name=entity.table,
            primary_key=[CONNECTION_COLUMN, ID_COLUMN],
            write_disposition=MERGE,
            columns={**key_columns(CONNECTION_COLUMN, ID_COLUMN), UPDATED_AT_COLUMN: {"dedup_sort": "desc"}},
        )
    }
    for child in entity.children:
        hints[child.table] = dlt.mark.make_hints(
            table_name=child.table,
            primary_key=[CONNECTION_COLUMN, child.parent_column, child.key],
            write_disposition=MERGE,
            columns={
                **key_columns(CONNECTION_COLUMN, child.parent_column),
                child.version_column: {"dedup_sort": "desc"},
            },
        )
    return hints


SCHEMA_CHANGE_HINTS = dlt.mark.make_hints(
    table_name=SCHEMA_CHANGES_TABLE,
    write_disposition="merge",
    primary_key=list(SCHEMA_CHANGE_KEY),
    columns=key_columns(*SCHEMA_CHANGE_KEY),
)


def schema_change_rows(changes: list) -> Any:
    """The changes as rows of ``_makini_schema_changes`` (one per connection, table, column)."""
    rows = pa.Table.from_pylist([c.row() for c in changes])
    # the key columns are never null: say so in Arrow too, as the hints do (else dlt warns they differ)
    rows = rows.cast(pa.schema([f.with_nullable(f.name not in SCHEMA_CHANGE_KEY) for f in rows.schema]))
    return dlt.mark.with_hints(rows, SCHEMA_CHANGE_HINTS, create_table_variant=True)
