"""MongoDB destination: one collection per entity, version-fenced upserts.

``mongodb_destination`` is a dlt custom destination (``@dlt.destination``)
written with pymongo. Use it by reference::

    Destination.from_reference("makini_sync.destinations.mongodb.mongodb_destination",
                               destination_name="mongodb")

It reads ``destination.mongodb.credentials`` (env
``DESTINATION__MONGODB__CREDENTIALS``), a ``mongodb://`` URI. The database is
the URI's path, else the pipeline's dataset name, else ``makini``.

Layout
    * One collection per entity table (``purchase_orders``, ``vendors``, ...).
    * ``_id`` is the compound ``{"connection_id": ..., "id": ...}`` (always in
      that key order: BSON compares sub-documents field by field, in order).
    * Line items stay embedded in their purchase order; a new version of the
      order replaces the whole document, so no orphan line can survive.
    * Nested objects (addresses, ``custom_fields``) are sub-documents, also
      when they arrive as JSON strings.
    * ``updated_at``/``deleted_at`` are BSON datetimes (UTC, ms precision), so
      comparisons are chronological.

The version fence
    :func:`is_stale` (``makini_sync.integrity.fence``, shared with the SQL side) is the
    rule; the database enforces the same rule
    atomically with ``ReplaceOne({"_id": key, "updated_at": {"$lt": new}},
    doc, upsert=True)``: when a stored version is newer or equal, the filter
    matches nothing, the upsert tries to insert a second document with the
    same ``_id`` and fails with E11000. That error is a skipped stale delta,
    not a failure. Since an E11000 can also come from a concurrent first
    insert of the same key, the keys that raised it are read back once and
    classified with :func:`is_stale`; the ones that were not stale are
    retried. The fence makes a batch that dlt re-sends whole a no-op.

Hard deletes
    :func:`apply_hard_deletes` removes the document and upserts a tombstone
    into ``_makini_tombstones``; every upsert batch first reads the
    tombstones of its keys (one ``find`` per batch) and drops any record whose
    version is not newer than its tombstone, so a stale create cannot
    resurrect a deleted row.

Loader file format: ``typed-jsonl``. dlt decodes it back into Python values
with dicts and lists intact and datetimes typed; the parquet path would hand
over JSON columns as strings and Arrow batches that need converting back.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import dlt
from bson.decimal128 import Decimal128
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import CredentialsConfiguration
from dlt.common.destination.exceptions import DestinationTerminalException
from dlt.common.schema import TTableSchema
from dlt.common.typing import TDataItems, TSecretStrValue
from pymongo import DeleteOne, MongoClient, ReplaceOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

# The fence rule lives in one place, shared with the SQL destinations:
# older is stale, equal ``updated_at`` is the same version (not written).
from makini_sync.integrity.fence import is_stale  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

CONNECTION_FIELD = "connection_id"
ID_FIELD = "id"
UPDATED_AT_FIELD = "updated_at"
DELETED_AT_FIELD = "deleted_at"
TOMBSTONES = "_makini_tombstones"
DEFAULT_DATABASE = "makini"
BATCH_SIZE = 1000
DUPLICATE_KEY = 11000
# Fields stored as sub-documents even when they arrive as JSON strings.
# Columns dlt typed ``json`` are treated the same way.
NESTED_FIELDS = frozenset({"custom_fields", "line_items", "address", "addresses"})
# (field, direction) lists and options for each entity collection.
ENTITY_INDEXES: tuple[tuple[list[tuple[str, int]], dict[str, Any]], ...] = (
    # incremental / recency queries per connection
    ([(CONNECTION_FIELD, 1), (UPDATED_AT_FIELD, 1)], {}),
    # soft-deleted documents only: live documents carry deleted_at = null
    ([(DELETED_AT_FIELD, 1)], {"partialFilterExpression": {DELETED_AT_FIELD: {"$type": "date"}}}),
)
_RETRIES = 3


class MongoDestinationError(DestinationTerminalException):
    """A batch the MongoDB destination cannot load; retrying will not help."""


def document_key(connection_id: str, record_id: str) -> dict[str, str]:
    """The compound ``_id`` of an entity document (field order matters)."""
    return {CONNECTION_FIELD: str(connection_id), ID_FIELD: str(record_id)}


def tombstone_key(connection_id: str, entity: str, record_id: str) -> dict[str, str]:
    return {CONNECTION_FIELD: str(connection_id), "entity": entity, ID_FIELD: str(record_id)}


def redact_uri(uri: str) -> str:
    """The URI with any user info replaced, fit for a log line."""
    return re.sub(r"//[^/@]*@", "//***@", uri)


def to_utc_datetime(value: Any) -> dt.datetime | None:
    """A UTC datetime at BSON (millisecond) precision, from a datetime or ISO string."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        value = value.astimezone(dt.timezone.utc)
        return dt.datetime(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond // 1000 * 1000, tzinfo=dt.timezone.utc,
        )
    raise TypeError(f"not a timestamp: {type(value).__name__}")


def _bson_value(value: Any) -> Any:
    """Values BSON cannot encode as they are, made encodable."""
    if isinstance(value, dict):
        return {str(k): _bson_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_bson_value(v) for v in value]
    if isinstance(value, dt.datetime):
        return to_utc_datetime(value)
    if isinstance(value, (dt.date, dt.time)):  # a calendar date is not an instant
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return Decimal128(value)
    return value


def _embedded(name: str, value: Any, json_columns: frozenset[str]) -> Any:
    if isinstance(value, str) and (name in json_columns or name in NESTED_FIELDS
                                   or name.endswith("_address")):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def to_document(record: Mapping[str, Any], json_columns: frozenset[str] = frozenset()) -> dict:
    """The stored document for one record (without ``_id``)."""
    doc = {k: _bson_value(_embedded(k, v, json_columns)) for k, v in record.items()}
    if isinstance(doc.get("line_items"), list):
        doc["line_items"] = [
            {k: _bson_value(_embedded(k, v, frozenset())) for k, v in line.items()}
            if isinstance(line, dict) else line
            for line in doc["line_items"]
        ]
    # dlt leaves out a column that has only been null so far; keep the field
    # so that "live" (deleted_at null) queries look the same everywhere
    doc.setdefault(DELETED_AT_FIELD, None)
    for field in (UPDATED_AT_FIELD, DELETED_AT_FIELD):
        if doc.get(field) is not None:
            doc[field] = to_utc_datetime(doc[field])
    return doc


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


# ---------------------------------------------------------------- clients and indexes
_lock = threading.Lock()
_clients: dict[str, MongoClient] = {}
_indexed: set[tuple[int, str, str]] = set()


def get_client(uri: str) -> MongoClient:
    """One client per URI per process (pymongo clients pool connections)."""
    with _lock:
        client = _clients.get(uri)
        if client is None:
            client = MongoClient(uri, tz_aware=True, tzinfo=dt.timezone.utc)
            _clients[uri] = client
        return client


def close_clients() -> None:
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
        _indexed.clear()


def ensure_indexes(collection: Collection) -> None:
    """Create the entity indexes once per process and collection."""
    key = (id(collection.database.client), collection.database.name, collection.name)
    with _lock:
        if key in _indexed:
            return
    for keys, options in ENTITY_INDEXES:
        collection.create_index(keys, **options)
    with _lock:
        _indexed.add(key)


# ---------------------------------------------------------------- fenced writes
def _fenced_write(collection: Collection, ops: Sequence[Any], incoming: Sequence[dt.datetime],
                  keys: Sequence[dict]) -> tuple[int, int]:
    """Run fenced upserts; returns (written, stale). E11000 on an upsert means
    the stored version is newer or equal, unless a concurrent insert raced us:
    read the keys back once and retry only those that are not stale."""
    written = stale = 0
    pending = list(range(len(ops)))
    for _ in range(_RETRIES):
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
                _key_tuple(d["_id"]): d.get(UPDATED_AT_FIELD)
                for d in collection.find({"_id": {"$in": [keys[i] for i in dup]}},
                                         {UPDATED_AT_FIELD: 1})
            }
            pending = []
            for i in dup:
                if is_stale(stored.get(_key_tuple(keys[i])), incoming[i]):
                    stale += 1
                else:
                    pending.append(i)  # lost a race with a concurrent insert
    if pending:
        raise MongoDestinationError(
            f"{len(pending)} upsert(s) to {collection.full_name} kept colliding with "
            f"concurrent writes after {_RETRIES} attempts"
        )
    return written, stale


def _key_tuple(key: Mapping[str, Any]) -> tuple:
    return tuple(key[f] for f in (CONNECTION_FIELD, ID_FIELD))


def upsert_documents(db: Database, entity_table: str, records: Iterable[Mapping[str, Any]],
                     json_columns: Iterable[str] = ()) -> UpsertResult:
    """Version-fenced upsert of one batch of records into ``db[entity_table]``."""
    result = UpsertResult()
    json_cols = frozenset(json_columns)
    # newest version per key within the batch (first one among equals)
    latest: dict[tuple, dict] = {}
    for record in records:
        doc = to_document(record, json_cols)
        if doc.get(UPDATED_AT_FIELD) is None or doc.get(CONNECTION_FIELD) is None \
                or doc.get(ID_FIELD) is None:
            raise MongoDestinationError(
                f"a {entity_table} record lacks connection_id, id or updated_at "
                f"(keys: {sorted(doc)[:20]}); the version fence needs all three"
            )
        k = (str(doc[CONNECTION_FIELD]), str(doc[ID_FIELD]))
        held = latest.get(k)
        if held is None or not is_stale(held[UPDATED_AT_FIELD], doc[UPDATED_AT_FIELD]):
            if held is not None:
                result.stale += 1
            latest[k] = doc
        else:
            result.stale += 1
    if not latest:
        return result

    # one read of this batch's tombstones
    tombs = {
        (t["_id"][CONNECTION_FIELD], t["_id"][ID_FIELD]): t[UPDATED_AT_FIELD]
        for t in db[TOMBSTONES].find(
            {"_id": {"$in": [tombstone_key(c, entity_table, i) for c, i in latest]}},
            {UPDATED_AT_FIELD: 1},
        )
    }
    ops, incoming, keys = [], [], []
    for k, doc in latest.items():
        if is_stale(tombs.get(k), doc[UPDATED_AT_FIELD]):
            result.tombstoned += 1
            continue
        key = document_key(*k)
        ops.append(ReplaceOne({"_id": key, UPDATED_AT_FIELD: {"$lt": doc[UPDATED_AT_FIELD]}},
                              doc, upsert=True))
        incoming.append(doc[UPDATED_AT_FIELD])
        keys.append(key)
    if ops:
        collection = db[entity_table]
        ensure_indexes(collection)
        written, stale = _fenced_write(collection, ops, incoming, keys)
        result.written += written
        result.stale += stale
    return result


def apply_hard_deletes(db: Database, entity_table: str,
                       deletions: Iterable[tuple[str, str, Any]]) -> int:
    """Hard-delete records and leave tombstones; returns documents deleted.

    ``deletions`` holds ``(connection_id, id, deleted_updated_at)``: the time
    of deletion. A stored version newer than that time is kept (the fence
    again). The tombstone (``_id`` = connection, entity, id) is fenced the same
    way, so an older deletion never moves a newer tombstone back in time.
    Embedded line items go with their document.
    """
    deletes, tomb_ops, incoming, tkeys = [], [], [], []
    for connection_id, record_id, deleted_at in deletions:
        when = to_utc_datetime(deleted_at)
        deletes.append(DeleteOne({"_id": document_key(connection_id, record_id),
                                  UPDATED_AT_FIELD: {"$lte": when}}))
        tkey = tombstone_key(connection_id, entity_table, record_id)
        tomb_ops.append(UpdateOne(
            {"_id": tkey, UPDATED_AT_FIELD: {"$lt": when}},
            {"$set": {CONNECTION_FIELD: tkey[CONNECTION_FIELD], "entity": entity_table,
                      ID_FIELD: tkey[ID_FIELD], UPDATED_AT_FIELD: when}},
            upsert=True,
        ))
        incoming.append(when)
        tkeys.append(tkey)
    if not deletes:
        return 0
    # tombstone first: should the delete fail, a rerun finds the fence in place
    _fenced_tombstones(db[TOMBSTONES], tomb_ops, incoming, tkeys)
    deleted = db[entity_table].bulk_write(deletes, ordered=False).deleted_count
    logger.info("mongodb %s: hard-deleted %d of %d", entity_table, deleted, len(deletes))
    return deleted


def _fenced_tombstones(collection: Collection, ops: list, incoming: list, keys: list) -> None:
    try:
        collection.bulk_write(ops, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        # E11000: a newer-or-equal tombstone exists, or a concurrent insert won;
        # retry the latter once (the fence decides again)
        retry = []
        stored = {
            json.dumps(t["_id"], sort_keys=True): t.get(UPDATED_AT_FIELD)
            for t in collection.find({"_id": {"$in": [keys[e["index"]] for e in errors]}})
        }
        for e in errors:
            i = e["index"]
            if not is_stale(stored.get(json.dumps(keys[i], sort_keys=True)), incoming[i]):
                retry.append(ops[i])
        if retry:
            collection.bulk_write(retry, ordered=False)


# ---------------------------------------------------------------- the dlt destination
@configspec
class MongoDBCredentials(CredentialsConfiguration):
    """A ``mongodb://`` (or ``mongodb+srv://``) URI, given as one string in
    ``destination.mongodb.credentials``. ``str()`` never shows user info."""

    connection_string: TSecretStrValue = None

    def parse_native_representation(self, native_value: Any) -> None:
        if isinstance(native_value, str):
            self.connection_string = native_value
        else:
            super().parse_native_representation(native_value)

    def to_native_representation(self) -> str:
        return self.connection_string

    def __str__(self) -> str:
        return redact_uri(self.connection_string or "").split("?")[0]


def _database(client: MongoClient) -> Database:
    """The URI's database, else the running pipeline's dataset, else ``makini``."""
    try:
        dataset = dlt.current.pipeline().dataset_name
    except Exception:  # no active pipeline (a direct call): fall back
        dataset = None
    return client.get_default_database(default=dataset or DEFAULT_DATABASE)


RECORD_TABLES = frozenset({"_makini_reconcile_runs"})  # reconcile.RUNS_TABLE: appended as they are


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
    if name.startswith("_dlt"):
        return
    if hasattr(items, "to_pylist"):  # Arrow batches (the sync yields Arrow tables)
        items = items.to_pylist()
    if name == "connection_events":  # lifecycle notices from webhooks, keyed by webhook id
        client = get_client(credentials.connection_string)
        collection = _database(client)[name]
        for row in items:
            collection.replace_one({"_id": row["webhook_id"]}, dict(row), upsert=True)
        return
    if name in RECORD_TABLES:  # plain records: no keys, no versions
        if items:
            _database(get_client(credentials.connection_string))[name].insert_many([dict(row) for row in items])
        return
    if name == TOMBSTONES:  # hard deletes, as the deltas path loads them
        client = get_client(credentials.connection_string)
        by_entity: dict[str, list] = {}
        for row in items:
            by_entity.setdefault(row["entity"], []).append((row[CONNECTION_FIELD], row[ID_FIELD], row[UPDATED_AT_FIELD]))
        for entity_table, deletions in by_entity.items():
            apply_hard_deletes(_database(client), entity_table, deletions)
        return
    if "__" in name:
        raise MongoDestinationError(
            f"table {name!r} is a child table; the MongoDB destination keeps child rows "
            "embedded in their parent document, so load it with max_table_nesting=0"
        )
    client = get_client(credentials.connection_string)
    db = _database(client)
    json_columns = [c for c, col in table.get("columns", {}).items()
                    if col.get("data_type") == "json"]
    result = upsert_documents(db, name, items, json_columns)
    logger.info(
        "mongodb %s/%s.%s: %d written, %d stale skipped, %d tombstoned skipped",
        credentials, db.name, name,
        result.written, result.stale, result.tombstoned,
    )
