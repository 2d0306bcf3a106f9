"""Bookmarks a worker takes over from other pipelines of the same dataset.

dlt restores a pipeline's own state from the destination when its disk is
empty. A connection this pipeline has never walked may still have been synced
into this dataset under another name: by the single pipeline ``makini_sync``
of the releases before state was split per destination and worker, or by
another shard before the fleet was resharded. Its newest bookmark committed
in this destination (dlt stores a pipeline's state with each completed load,
so the rows it covers are there) is adopted, without the walk in progress,
and the walk goes on incrementally from it instead of from the start.
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional

import dlt
from dlt.common.destination.client import WithStateSync
from dlt.pipeline.state_sync import decompress_state

from makini_sync.workers.naming import LEGACY_SYNC_PIPELINE

logger = logging.getLogger(__name__)

STATE_TABLE = "_dlt_pipeline_state"
IN_PROGRESS = "walk"  # a walk's cursor and watermark belong to the pipeline whose spool holds its pages


def adopt_bookmarks(pipeline: dlt.Pipeline, prefix: str, connection_ids: Iterable[str],
                    tables: Iterable[str]) -> dict[tuple[str, str], str]:
    """Fill in the bookmarks this pipeline lacks; returns (connection, table) -> the pipeline adopted from."""
    resources = pipeline.state.get("sources", {}).get("makini", {}).get("resources", {})
    # only a walk this pipeline never began: an empty bookmark may be a full refresh's (full_refresh.py)
    wanted = [(c, t) for c in connection_ids for t in tables if c not in resources.get(t, {}).get("bookmarks", {})]
    if not wanted:
        return {}
    found = newest_bookmarks(pipeline, prefix, wanted)
    if not found:
        return {}
    with pipeline.managed_state() as state:
        resources = state.setdefault("sources", {}).setdefault("makini", {}).setdefault("resources", {})
        for (connection_id, table), (bookmark, origin) in found.items():
            resources.setdefault(table, {}).setdefault("bookmarks", {})[connection_id] = bookmark
            logger.info("%s %s: took the bookmark %s over from pipeline %s", table, connection_id,
                        bookmark.get("modified_after"), origin)
    return {key: origin for key, (_, origin) in found.items()}


def newest_bookmarks(pipeline: dlt.Pipeline, prefix: str,
                     wanted: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[dict, str]]:
    """(connection, table) -> (bookmark, pipeline name): the newest another pipeline committed here."""
    found: dict[tuple[str, str], tuple[dict, str]] = {}
    try:
        with pipeline.destination_client() as client:
            if not isinstance(client, WithStateSync):
                return {}  # a destination that keeps no pipeline state
            names = _other_pipelines(client, prefix, pipeline.pipeline_name)
            for name in names:
                stored = client.get_stored_state(name)
                if not stored:
                    continue
                resources = decompress_state(stored.state).get("sources", {}).get("makini", {}).get("resources", {})
                for connection_id, table in wanted:
                    bookmark = _settled(resources.get(table, {}).get("bookmarks", {}).get(connection_id))
                    if bookmark is None:
                        continue
                    best = found.get((connection_id, table))
                    if best is None or bookmark["modified_after"] > best[0]["modified_after"]:
                        found[(connection_id, table)] = (bookmark, name)
    except Exception as exc:  # noqa: BLE001 - nothing to adopt (no dataset yet, or no state table): walk from the start
        logger.debug("no bookmarks to adopt: %s", type(exc).__name__)
        return {}
    return found


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
