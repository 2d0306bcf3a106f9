"""Fenced upserts, where a duplicate-key error (E11000) means "not newer".

An upsert filtered on ``{"_id": key, "updated_at": {"$lt": new}}`` matches
nothing when the stored version is newer or equal; it then tries to insert a
second document with the same ``_id`` and fails with E11000: a skipped stale
write, not a failure. The database applies the fence atomically this way. A
concurrent first insert of the same key raises E11000 too, so the keys that
raised it are read back, classified with ``is_stale`` and the others retried.
Entity upserts and tombstones both write through here.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Mapping, Sequence

from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from sources.makini.settings import UPDATED_AT_COLUMN

from makini_sync.integrity.fence import is_stale

from .errors import MongoDestinationError

DUPLICATE_KEY = 11000
ATTEMPTS = 3


def _key_id(key: Mapping[str, Any]) -> str:
    """A hashable form of an ``_id`` sub-document, whatever its fields and their order."""
    return json.dumps(key, sort_keys=True)


def fenced_bulk_write(collection: Collection, ops: Sequence[Any], incoming: Sequence[dt.datetime],
                      keys: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """Run fenced upserts ``ops`` (``incoming[i]`` is the version ``ops[i]`` writes
    under ``_id`` ``keys[i]``); returns (written, stale)."""
    written = stale = 0
    pending = list(range(len(ops)))
    for _ in range(ATTEMPTS):
        if not pending:
            break
        try:
            result = collection.bulk_write([ops[i] for i in pending], ordered=False)
            written += result.upserted_count + result.matched_count
            return written, stale
        except BulkWriteError as exc:
            details = exc.details
            errors = details.get("writeErrors", [])
            other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if other:
                first = other[0]
                raise MongoDestinationError(
                    f"MongoDB rejected {len(other)} write(s) to {collection.full_name}: "
                    f"code {first.get('code')}: {first.get('errmsg')}"
                ) from exc
            written += details.get("nUpserted", 0) + details.get("nMatched", 0)
            dup = [pending[e["index"]] for e in errors]
            stored = {
                _key_id(d["_id"]): d.get(UPDATED_AT_COLUMN)
                for d in collection.find({"_id": {"$in": [keys[i] for i in dup]}},
                                         {UPDATED_AT_COLUMN: 1})
            }
            pending = []
            for i in dup:
                if is_stale(stored.get(_key_id(keys[i])), incoming[i]):
                    stale += 1
                else:
                    pending.append(i)  # lost a race with a concurrent insert
    if pending:
        raise MongoDestinationError(
            f"{len(pending)} upsert(s) to {collection.full_name} kept colliding with "
            f"concurrent writes after {ATTEMPTS} attempts"
        )
    return written, stale
