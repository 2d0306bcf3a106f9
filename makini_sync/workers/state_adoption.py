"""Bookmarks a worker takes over from other pipelines of the same dataset.

dlt restores a pipeline's own state from the destination when its disk is
empty. A connection this pipeline has never walked may still have been synced
into this dataset under another name: by the single pipeline ``makini_sync``
of the releases before state was split per destination and worker, or by
another shard before the fleet was resharded. The connection's bookmark in
the most recently committed state that holds one (dlt stores a pipeline's
state with each completed load, so the rows it covers are there) is adopted,
without the walk in progress, and the walk goes on incrementally from it.
If that newest bookmark is empty (a full refresh of it had begun), nothing is
adopted and the walk starts from the beginning.

A pipeline keeps only its own connections' bookmarks (``forget_departed``),
so a stale bookmark of a connection that moved away is never the newest.
"""

from __future__ import annotations

import datetime
import logging
from typing import Iterable, Optional

import dlt

from sources.makini.dlt_seam import editing_source_state, source_resources_state, stored_source_state
from sources.makini.walk_position import STATE_KEY as WALK_KEY

from makini_sync.run.destination_session import is_missing_table
from makini_sync.workers.naming import LEGACY_SYNC_PIPELINE

logger = logging.getLogger(__name__)

STATE_TABLE = "_dlt_pipeline_state"
IN_PROGRESS = WALK_KEY  # a walk's cursor and watermark belong to the pipeline whose spool holds its pages

Found = tuple[datetime.datetime, dict, str]  # when committed, the connection's bookmark, by which pipeline


def adopt_bookmarks(pipeline: dlt.Pipeline, prefix: str, connection_ids: Iterable[str],
                    tables: Iterable[str]) -> dict[tuple[str, str], str]:
    """Fill in the bookmarks this pipeline lacks; returns (connection, table) -> the pipeline adopted from."""
    resources = source_resources_state(pipeline)
    # only a walk this pipeline never began: an empty bookmark may be a full refresh's (full_refresh.py)
    wanted = [(c, t) for c in connection_ids for t in tables if c not in resources.get(t, {}).get("bookmarks", {})]
    if not wanted:
        return {}
    adopted = {key: (bookmark, origin) for key, (_, slot, origin) in newest_slots(pipeline, prefix, wanted).items()
               if (bookmark := _settled(slot)) is not None}
    if not adopted:
        return {}
    with editing_source_state(pipeline, extract=False) as resources:
        for (connection_id, table), (bookmark, origin) in adopted.items():
            resources.setdefault(table, {}).setdefault("bookmarks", {})[connection_id] = bookmark
            logger.info("%s %s: took the bookmark %s over from pipeline %s", table, connection_id,
                        bookmark.get("modified_after"), origin)
    return {key: origin for key, (_, origin) in adopted.items()}


def newest_slots(pipeline: dlt.Pipeline, prefix: str, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], Found]:
    """(connection, table) -> its bookmark in the newest state another pipeline committed here that has one."""
    found: dict[tuple[str, str], Found] = {}
    try:
        with pipeline.destination_client() as client:
            for name in _other_pipelines(client, prefix, pipeline.pipeline_name):
                stored = stored_source_state(client, name)
                if stored is None:
                    continue
                resources, committed = stored
                for connection_id, table in wanted:
                    bookmarks = resources.get(table, {}).get("bookmarks", {})
                    if connection_id not in bookmarks:
                        continue
                    best = found.get((connection_id, table))
                    if best is None or committed > best[0]:
                        found[(connection_id, table)] = (committed, bookmarks[connection_id], name)
    except Exception as exc:  # noqa: BLE001 - a destination without state tables yet: nothing to adopt
        if not is_missing_table(exc):
            logger.warning("could not read other pipelines' bookmarks (%s: %s); walking those connections "
                           "from the start", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return {}
    return found


def forget_departed(pipeline: dlt.Pipeline, connection_ids: Iterable[str]) -> None:
    """Drop the bookmarks of connections this worker no longer has (they moved to
    another shard): another pipeline holds them now, and a stale copy here must
    never be the one a later owner adopts."""
    mine = set(connection_ids)
    resources = source_resources_state(pipeline)
    if not any(set(r.get("bookmarks", {})) - mine for r in resources.values() if isinstance(r, dict)):
        return
    with editing_source_state(pipeline, extract=False) as resources:
        for resource in resources.values():
            bookmarks = resource.get("bookmarks", {}) if isinstance(resource, dict) else {}
            for connection_id in set(bookmarks) - mine:
                del bookmarks[connection_id]


def _other_pipelines(client: object, prefix: str, own: str) -> list[str]:
    sql = client.sql_client  # type: ignore[attr-defined]
    table = sql.make_qualified_table_name(STATE_TABLE)
    rows = sql.execute_sql(f"SELECT DISTINCT pipeline_name FROM {table}")
    return sorted(name for (name,) in rows or []
                  if name != own and (name == LEGACY_SYNC_PIPELINE or name.startswith(prefix)))



def _settled(bookmark: Optional[dict]) -> Optional[dict]:
    """The bookmark without the walk in progress; None if it has no settled position."""
    if not bookmark or not bookmark.get("modified_after"):
        return None
    return {key: value for key, value in bookmark.items() if key != IN_PROGRESS}
