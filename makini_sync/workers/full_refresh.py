"""A full refresh of one worker's connections, in a dataset other workers share.

dlt's ``refresh="drop_resources"`` drops whole tables, which would delete every
other worker's rows while their bookmarks say they are current. Here a worker
forgets its own connections' bookmarks, then deletes its own connections' rows
(entity tables and their child tables), and the run walks those connections
from the start. The bookmarks go first and are saved before any row is
deleted: a run killed after that point leaves at most rows missing that the
next run, with no bookmark to start from, walks and loads again. Tombstones
stay: a hard delete is still a delete after a refresh.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import dlt

from sources.makini.dlt_seam import editing_source_state
from sources.makini.settings import CONNECTION_COLUMN, Entity

from makini_sync.destinations.profiles import Profile
from makini_sync.integrity.fence import existing_tables

logger = logging.getLogger(__name__)


def refresh_own_rows(pipeline: dlt.Pipeline, profile: Profile, entities: Sequence[Entity],
                     connection_ids: Sequence[str]) -> dict[str, int]:
    """Forget the bookmarks, then delete the rows, of ``connection_ids`` in ``entities``' tables.
    Returns rows deleted per table. The caller holds the load lock and the connections' locks."""
    if not connection_ids:
        return {}
    forget_bookmarks(pipeline, profile, [e.table for e in entities], connection_ids)
    tables = [name for e in entities for name in e.tables]
    deleted = delete_documents(profile, pipeline, entities, connection_ids) if profile.documents else \
        delete_rows(pipeline, tables, connection_ids)
    logger.warning("full refresh: deleted %s row(s) of %d connection(s); walking them from the start",
                   sum(deleted.values()), len(connection_ids))
    return deleted


def forget_bookmarks(pipeline: dlt.Pipeline, profile: Profile, tables: Sequence[str],
                     connection_ids: Sequence[str]) -> None:
    """An empty bookmark, not none: a walk from the start, and never one adopted
    from another pipeline (``state_adoption.py``), whose rows this refresh deleted.
    Committed to the destination before any row goes, so a worker whose disk is
    wiped after a kill restores the empty bookmarks, not the ones before them.
    (MongoDB keeps no pipeline state: there an empty disk walks from the start anyway.)"""
    commit = not profile.documents and pipeline.default_schema_name is not None
    with editing_source_state(pipeline, extract=commit) as resources:  # saved, with a newer version
        for table in tables:
            bookmarks = resources.setdefault(table, {}).setdefault("bookmarks", {})
            for connection_id in connection_ids:
                bookmarks[connection_id] = {}
    if commit:
        pipeline.normalize()
        profile.load(pipeline)


def delete_rows(pipeline: dlt.Pipeline, tables: Sequence[str], connection_ids: Sequence[str]) -> dict[str, int]:
    present = [t for t in tables if t in existing_tables(pipeline, tables)]
    deleted: dict[str, int] = {}
    if not present:
        return deleted
    with pipeline.sql_client() as client:
        column = client.escape_column_name(CONNECTION_COLUMN)
        marks = ", ".join(["%s"] * len(connection_ids))
        for table in reversed(present):  # children first
            name = client.make_qualified_table_name(table)
            count = client.execute_sql(f"SELECT COUNT(*) FROM {name} WHERE {column} IN ({marks})", *connection_ids)
            client.execute_sql(f"DELETE FROM {name} WHERE {column} IN ({marks})", *connection_ids)
            deleted[table] = int(count[0][0]) if count else 0
    return deleted


def delete_documents(profile: Profile, pipeline: dlt.Pipeline, entities: Sequence[Entity],
                     connection_ids: Sequence[str]) -> dict[str, int]:
    """MongoDB: child rows live inside their parent's document."""
    from makini_sync.destinations.mongodb.connection import get_client

    uri = str(dlt.secrets[f"destination.{profile.name}.credentials"])
    database: Any = get_client(uri).get_default_database(default=pipeline.dataset_name)
    return {
        e.table: database[e.table].delete_many({CONNECTION_COLUMN: {"$in": list(connection_ids)}}).deleted_count
        for e in entities
    }
