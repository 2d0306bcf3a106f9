"""MongoDB destination: one collection per entity, version-fenced upserts.

A dlt custom destination, used by reference::

    Destination.from_reference("makini_sync.destinations.mongodb.mongodb_destination",
                               destination_name="mongodb")

It reads ``destination.mongodb.credentials`` (env
``DESTINATION__MONGODB__CREDENTIALS``), a ``mongodb://`` URI. The database is
the URI's path, else the pipeline's dataset name, else ``makini``.

``mongodb_destination`` is declared here, not in a submodule, because dlt
names the destination type it records in each pipeline's state after the
declaring module. It routes each batch by table to the submodules.
"""

from __future__ import annotations

import logging

import dlt
from dlt.common.schema import TTableSchema
from dlt.common.typing import TDataItems

from sources.makini.settings import CONNECTION_COLUMN, ID_COLUMN, UPDATED_AT_COLUMN

from makini_sync.integrity.fence import TOMBSTONES, is_stale

from .connection import (
    DEFAULT_DATABASE, ENTITY_INDEXES, close_clients, ensure_indexes, get_client, target_database,
)
from .credentials import MongoDBCredentials, redact_uri
from .documents import CHILD_FIELDS, NESTED_FIELDS, document_key, to_document, to_utc_datetime
from .errors import MongoDestinationError
from .fenced_write import DUPLICATE_KEY, fenced_bulk_write
from .tombstones import apply_hard_deletes, tombstone_key, tombstone_versions
from .upserts import UpsertResult, upsert_documents

__all__ = [
    "BATCH_SIZE", "CHILD_FIELDS", "DEFAULT_DATABASE", "DUPLICATE_KEY", "ENTITY_INDEXES",
    "MongoDBCredentials", "MongoDestinationError", "NESTED_FIELDS", "RECORD_TABLES", "TOMBSTONES",
    "UpsertResult", "apply_hard_deletes", "close_clients", "document_key", "ensure_indexes",
    "fenced_bulk_write", "get_client", "is_stale", "mongodb_destination", "redact_uri",
    "target_database", "to_document", "to_utc_datetime", "tombstone_key", "tombstone_versions",
    "upsert_documents",
]

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
# reconcile.RUNS_TABLE and observe/sync_runs.SYNC_RUNS_TABLE: appended as they are
RECORD_TABLES = frozenset({"_makini_reconcile_runs", "_makini_sync_runs"})


# typed-jsonl: dlt hands the records over as Python values with dicts and lists
# intact and datetimes typed; parquet would hand over JSON columns as strings.
@dlt.destination(
    name="mongodb",
    batch_size=BATCH_SIZE,
    loader_file_format="typed-jsonl",
    max_table_nesting=0,
    skip_dlt_columns_and_tables=True,
)
def mongodb_destination(
    items: TDataItems,
    table: TTableSchema,
    credentials: MongoDBCredentials = dlt.secrets.value,
) -> None:
    """Load one batch (up to ``BATCH_SIZE`` records of one table) into MongoDB."""
    name = table["name"]
    assert name is not None  # dlt hands each batch its table's schema, which is named
    if name.startswith("_dlt"):
        return
    if hasattr(items, "to_pylist"):  # Arrow batches (the sync yields Arrow tables)
        items = items.to_pylist()
    if name == "connection_events":  # lifecycle notices from webhooks, keyed by webhook id
        client = get_client(credentials.connection_string)
        collection = target_database(client)[name]
        for row in items:
            collection.replace_one({"_id": row["webhook_id"]}, dict(row), upsert=True)
        return
    if name in RECORD_TABLES:  # plain records: no keys, no versions
        if items:
            target_database(get_client(credentials.connection_string))[name].insert_many(
                [dict(row) for row in items])
        return
    if name == TOMBSTONES:  # hard deletes, as the deltas path loads them
        client = get_client(credentials.connection_string)
        by_entity: dict[str, list] = {}
        for row in items:
            by_entity.setdefault(row["entity"], []).append(
                (row[CONNECTION_COLUMN], row[ID_COLUMN], row[UPDATED_AT_COLUMN]))
        for entity_table, deletions in by_entity.items():
            apply_hard_deletes(target_database(client), entity_table, deletions)
        return
    if "__" in name:
        raise MongoDestinationError(
            f"table {name!r} is a child table; the MongoDB destination keeps child rows "
            "embedded in their parent document, so load it with max_table_nesting=0"
        )
    client = get_client(credentials.connection_string)
    db = target_database(client)
    json_columns = [c for c, col in table.get("columns", {}).items()
                    if col.get("data_type") == "json"]
    result = upsert_documents(db, name, items, json_columns)
    logger.info(
        "mongodb %s/%s.%s: %d written, %d stale skipped, %d tombstoned skipped",
        credentials, db.name, name,
        result.written, result.stale, result.tombstoned,
    )
