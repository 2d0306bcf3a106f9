"""Reconcile: compare, per connection and entity, the API's count with the warehouse's,
and backfill (a full walk, merged; nothing dropped) where the warehouse has fewer rows.

The API counts soft-deleted records (they stay in lists); hard-deleted ones
are gone from both, so equal counts mean nothing is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from sources.makini.client import RetryPolicy, raise_for_makini_error
from sources.makini.connections import open_connections
from sources.makini.paginator import MakiniCursorPaginator
from sources.makini.entity_config import load_registry
from sources.makini.settings import CONNECTION_COLUMN, Entity

from .profiles import Profile, make_pipeline
from .sync import run_sync

logger = logging.getLogger(__name__)


@dataclass
class Reconciled:
    connection_id: str
    table: str
    api_count: int
    warehouse_before: int
    warehouse_after: int

    @property
    def backfilled(self) -> bool:
        return self.warehouse_after != self.warehouse_before


def api_count(client: Any, entity: Entity) -> int:
    """``total_count`` of the entity, or the length of a full walk when the API cannot count."""
    paginator = MakiniCursorPaginator()
    pages = client.paginate(entity.path, params={"limit": entity.max_page_size}, paginator=paginator,
                            hooks={"response": [raise_for_makini_error]})
    first = next(pages, [])
    if paginator.total_count is not None:
        return paginator.total_count
    return len(first) + sum(len(page) for page in pages)


def warehouse_count(profile: Profile, entity: Entity, connection_id: str) -> int:
    if profile.documents:
        import pymongo
        import dlt

        uri = str(dlt.secrets[f"destination.{profile.name}.credentials"])
        db = pymongo.MongoClient(uri).get_default_database(default="makini")
        return db[entity.table].count_documents({CONNECTION_COLUMN: connection_id})
    pipeline = make_pipeline(profile, "makini_sync")
    try:
        with pipeline.sql_client() as client:
            rows = client.execute_sql(
                f"SELECT COUNT(*) FROM {client.make_qualified_table_name(entity.table)}"
                f" WHERE {client.escape_column_name(CONNECTION_COLUMN)} = %s",
                connection_id,
            )
            return int(rows[0][0])
    except Exception as exc:  # noqa: BLE001 - no table yet: nothing synced
        logger.debug("counting %s failed: %s", entity.table, type(exc).__name__)
        return 0


def reconcile(
    profile: Profile,
    base_url: str,
    api_token: Any,
    entities: Optional[Sequence[str]] = None,
    retry_policy: Optional[RetryPolicy] = None,
) -> list[Reconciled]:
    results = []
    for connection in open_connections(base_url, api_token, retry_policy or RetryPolicy()):
        connection_id = connection.identify()
        for entity in load_registry().resolve(entities):
            expected = api_count(connection.client, entity)
            before = warehouse_count(profile, entity, connection_id)
            after = before
            if before < expected:
                logger.warning("%s %s: API has %d, warehouse %d: backfilling", connection_id, entity.table, expected, before)
                run_sync(profile, base_url=base_url, api_token=[connection.client.auth.token],
                         entities=[entity.table], backfill=True, retry_policy=retry_policy)
                after = warehouse_count(profile, entity, connection_id)
            results.append(Reconciled(connection_id, entity.table, expected, before, after))
    return results
