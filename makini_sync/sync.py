"""One sync run: build the source and pipeline, load, tidy, and account for it."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import dlt

from sources.makini import makini_source
from sources.makini.client import RetryPolicy
from sources.makini.report import SyncReport
from sources.makini.settings import Entity, resolve_entities

from .children import prune_superseded_children
from .fence import SqlVersionFence, loaded_tables, sweep_tombstoned
from .locking import dataset_lock
from .profiles import Profile, make_pipeline

logger = logging.getLogger(__name__)


@dataclass
class TableStats:
    loaded: int = 0
    inserted: int = 0
    updated: int = 0
    total: int = 0


@dataclass
class SyncResult:
    destination: str
    report: SyncReport
    tables: dict[str, TableStats] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.report.failures


def table_names(entities: Sequence[Entity]) -> list[str]:
    return [name for e in entities for name in (e.table, *(c.table for c in e.children))]


def count_rows(pipeline: dlt.Pipeline, tables: Sequence[str]) -> dict[str, int]:
    """Row counts of the tables that exist at the destination."""
    if not pipeline.default_schema_name:
        return {}
    schema = pipeline.default_schema
    present = [t for t in tables if t in schema.tables and schema.tables[t].get("columns")]
    if not present:
        return {}
    counts = {}
    try:
        with pipeline.sql_client() as client:
            for table in present:
                rows = client.execute_sql(
                    f"SELECT COUNT(*) FROM {client.make_qualified_table_name(table)}"
                )
                counts[table] = int(rows[0][0])
    except Exception as exc:  # noqa: BLE001 - tables may not be created yet
        logger.debug("could not count rows: %s", type(exc).__name__)
    return counts


def is_sql(pipeline: dlt.Pipeline) -> bool:
    try:
        pipeline.sql_client()
    except Exception:  # noqa: BLE001 - dlt raises for destinations without SQL
        return False
    return True


@contextlib.contextmanager
def version_fence(pipeline: dlt.Pipeline, enabled: bool = True) -> Iterator[Optional[Callable]]:
    """The fence a load of ``pipeline`` filters its batches through (None: nothing to fence)."""
    tables = loaded_tables(pipeline)
    if not enabled or not tables or not is_sql(pipeline):
        yield None  # nothing stored yet, or the destination fences itself (MongoDB)
        return
    with pipeline.sql_client() as client:
        yield SqlVersionFence(client, tables).fresh


def after_load(pipeline: dlt.Pipeline, entities: Sequence[Entity]) -> None:
    """Post-load integrity: no child rows of superseded versions, no tombstoned rows."""
    tables = loaded_tables(pipeline)
    if not tables or not is_sql(pipeline):
        return
    with pipeline.sql_client() as client:
        sweep_tombstoned(client, entities, tables)
        prune_superseded_children(client, list(entities), tables)


def run_sync(
    profile: Profile,
    *,
    base_url: Optional[str] = None,
    api_token: Any = None,
    entities: Optional[Sequence[str]] = None,
    full_refresh: bool = False,
    pipeline_name: str = "makini_sync",
    progress: Any = None,
    retry_policy: Optional[RetryPolicy] = None,
) -> SyncResult:
    """Sync the chosen entities into ``profile``'s destination.

    Connection failures are collected in the result (the other connections
    still load); configuration and load failures raise.
    """
    started = time.monotonic()
    chosen = resolve_entities(entities)
    report = SyncReport()
    pipeline = make_pipeline(profile, pipeline_name, progress=progress)
    source_args: dict[str, Any] = {"entities": [e.table for e in chosen], "report": report}
    if base_url is not None:
        source_args["base_url"] = base_url
    if api_token is not None:
        source_args["api_token"] = api_token
    if retry_policy is not None:
        source_args["retry_policy"] = retry_policy

    tables = table_names(chosen)
    with dataset_lock(profile.name):
        pipeline.sync_destination()
        before = {} if full_refresh else count_rows(pipeline, tables)
        with version_fence(pipeline, enabled=not full_refresh) as fence:
            source = makini_source(**source_args, fence=fence)
            pipeline.extract(
                source,
                refresh="drop_resources" if full_refresh else None,
                loader_file_format=profile.loader_file_format,
            )
        pipeline.normalize()
        pipeline.load()
        after_load(pipeline, chosen)
    after = count_rows(pipeline, tables)

    normalized = pipeline.last_trace.last_normalize_info
    loaded = dict(normalized.row_counts) if normalized else {}
    result = SyncResult(profile.name, report, seconds=time.monotonic() - started)
    for table in tables:
        n = loaded.get(table, 0)
        inserted = max(after.get(table, 0) - before.get(table, 0), 0)
        result.tables[table] = TableStats(
            loaded=n, inserted=min(inserted, n), updated=max(n - inserted, 0), total=after.get(table, 0)
        )
    return result
