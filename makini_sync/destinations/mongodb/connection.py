"""Clients, the entity indexes, and which database a load writes to.

pymongo clients pool connections, so there is one per URI per process; the
indexes are created once per process and collection rather than per batch.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import dlt
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database

from sources.makini.settings import CONNECTION_COLUMN, DELETED_AT_COLUMN, UPDATED_AT_COLUMN

DEFAULT_DATABASE = "makini"
# (field, direction) lists and options for each entity collection.
ENTITY_INDEXES: tuple[tuple[list[tuple[str, int]], dict[str, Any]], ...] = (
    # incremental / recency queries per connection
    ([(CONNECTION_COLUMN, 1), (UPDATED_AT_COLUMN, 1)], {}),
    # soft-deleted documents only: live documents carry deleted_at = null
    ([(DELETED_AT_COLUMN, 1)], {"partialFilterExpression": {DELETED_AT_COLUMN: {"$type": "date"}}}),
)

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


def target_database(client: MongoClient) -> Database:
    """The URI's database, else the running pipeline's dataset, else ``makini``."""
    try:
        dataset = dlt.current.pipeline().dataset_name
    except Exception:  # no active pipeline (a direct call): fall back
        dataset = None
    return client.get_default_database(default=dataset or DEFAULT_DATABASE)
