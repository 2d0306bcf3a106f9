"""Version-fenced upserts of one batch into its entity collection.

dlt re-sends a batch whole after a failed call, and deltas can arrive out of
order: only a version newer than both the stored document and its tombstone
is written, so either is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from pymongo import ReplaceOne
from pymongo.database import Database

from sources.makini.settings import CONNECTION_COLUMN, ID_COLUMN, UPDATED_AT_COLUMN

from makini_sync.integrity.fence import is_stale

from .connection import ensure_indexes
from .documents import document_key, to_document
from .errors import MongoDestinationError
from .fenced_write import fenced_bulk_write
from .tombstones import tombstone_versions


@dataclass
class UpsertResult:
    written: int = 0  # inserted or replaced
    stale: int = 0  # older or equal to the stored version (or a duplicate in the batch)
    tombstoned: int = 0  # not newer than a hard delete

    def __iadd__(self, other: "UpsertResult") -> "UpsertResult":
        self.written += other.written
        self.stale += other.stale
        self.tombstoned += other.tombstoned
        return self


def upsert_documents(db: Database, entity_table: str, records: Iterable[Mapping[str, Any]],
                     json_columns: Iterable[str] = ()) -> UpsertResult:
    """Version-fenced upsert of one batch of records into ``db[entity_table]``."""
    result = UpsertResult()
    json_cols = frozenset(json_columns)
    # newest version per key within the batch (first one among equals)
    latest: dict[tuple, dict] = {}
    for record in records:
        doc = to_document(record, json_cols)
        if doc.get(UPDATED_AT_COLUMN) is None or doc.get(CONNECTION_COLUMN) is None \
                or doc.get(ID_COLUMN) is None:
            raise MongoDestinationError(
                f"a {entity_table} record lacks {CONNECTION_COLUMN}, {ID_COLUMN} or {UPDATED_AT_COLUMN} "
                f"(keys: {sorted(doc)[:20]}); the version fence needs all three"
            )
        k = (str(doc[CONNECTION_COLUMN]), str(doc[ID_COLUMN]))
        held = latest.get(k)
        if held is None or not is_stale(held[UPDATED_AT_COLUMN], doc[UPDATED_AT_COLUMN]):
            if held is not None:
                result.stale += 1
            latest[k] = doc
        else:
            result.stale += 1
    if not latest:
        return result

    tombs = tombstone_versions(db, entity_table, latest)
    ops, incoming, keys = [], [], []
    for k, doc in latest.items():
        if is_stale(tombs.get(k), doc[UPDATED_AT_COLUMN]):
            result.tombstoned += 1
            continue
        key = document_key(*k)
        ops.append(ReplaceOne({"_id": key, UPDATED_AT_COLUMN: {"$lt": doc[UPDATED_AT_COLUMN]}},
                              doc, upsert=True))
        incoming.append(doc[UPDATED_AT_COLUMN])
        keys.append(key)
    if ops:
        collection = db[entity_table]
        ensure_indexes(collection)
        written, stale = fenced_bulk_write(collection, ops, incoming, keys)
        result.written += written
        result.stale += stale
    return result
