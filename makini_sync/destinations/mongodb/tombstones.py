"""Hard deletes: the document goes, a tombstone in ``_makini_tombstones`` stays.

The tombstone holds the time of deletion, so that a create or update that is
not newer (a stale delta arriving late) cannot resurrect the record: upserts
read the tombstones of their keys first.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Iterable

from pymongo import DeleteOne, UpdateOne
from pymongo.database import Database

from sources.makini.settings import CONNECTION_COLUMN, ID_COLUMN, UPDATED_AT_COLUMN

from makini_sync.integrity.fence import TOMBSTONES

from .documents import document_key, to_utc_datetime
from .errors import MongoDestinationError
from .fenced_write import fenced_bulk_write

logger = logging.getLogger(__package__)


def tombstone_key(connection_id: str, entity: str, record_id: str) -> dict[str, str]:
    return {CONNECTION_COLUMN: str(connection_id), "entity": entity, ID_COLUMN: str(record_id)}


def tombstone_versions(db: Database, entity_table: str,
                       keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dt.datetime]:
    """Time of deletion per (connection_id, id) of ``keys`` that have a tombstone, in one read."""
    return {
        (t["_id"][CONNECTION_COLUMN], t["_id"][ID_COLUMN]): t[UPDATED_AT_COLUMN]
        for t in db[TOMBSTONES].find(
            {"_id": {"$in": [tombstone_key(c, entity_table, i) for c, i in keys]}},
            {UPDATED_AT_COLUMN: 1},
        )
    }


def apply_hard_deletes(db: Database, entity_table: str,
                       deletions: Iterable[tuple[str, str, Any]]) -> int:
    """Hard-delete records and leave tombstones; returns documents deleted.

    ``deletions`` holds ``(connection_id, id, deleted_updated_at)``: the time
    of deletion. A stored version newer than that time is kept (the fence
    again). The tombstone (``_id`` = connection, entity, id) is fenced the same
    way, so an older deletion never moves a newer tombstone back in time.
    Embedded child rows go with their document.
    """
    deletes, tomb_ops, tkeys = [], [], []
    incoming: list[dt.datetime] = []
    for connection_id, record_id, deleted_at in deletions:
        when = to_utc_datetime(deleted_at)
        if when is None:  # the fence below could not compare it
            raise MongoDestinationError(f"a hard delete of {entity_table} {record_id!r} has no deletion time")
        deletes.append(DeleteOne({"_id": document_key(connection_id, record_id),
                                  UPDATED_AT_COLUMN: {"$lte": when}}))
        tkey = tombstone_key(connection_id, entity_table, record_id)
        tomb_ops.append(UpdateOne(
            {"_id": tkey, UPDATED_AT_COLUMN: {"$lt": when}},
            {"$set": {CONNECTION_COLUMN: tkey[CONNECTION_COLUMN], "entity": entity_table,
                      ID_COLUMN: tkey[ID_COLUMN], UPDATED_AT_COLUMN: when}},
            upsert=True,
        ))
        incoming.append(when)
        tkeys.append(tkey)
    if not deletes:
        return 0
    # tombstone first: should the delete fail, a rerun finds the fence in place
    fenced_bulk_write(db[TOMBSTONES], tomb_ops, incoming, tkeys)
    deleted = db[entity_table].bulk_write(deletes, ordered=False).deleted_count
    logger.info("mongodb %s: hard-deleted %d of %d", entity_table, deleted, len(deletes))
    return deleted
