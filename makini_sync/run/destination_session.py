"""What a sync asks the destination around its loads: which tables exist, row
counts, the version fence, and the integrity mends after each load."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import dlt

from sources.makini.settings import Entity

from makini_sync.integrity.pruning import Keys, prune_superseded_children
from makini_sync.destinations.key_indexes import ensure_key_indexes
from makini_sync.integrity.fence import SqlVersionFence, existing_tables, fenced_table_names, stored_tables, sweep_tombstoned
from makini_sync.destinations.profiles import Profile

logger = logging.getLogger(__name__)


def is_missing_table(exc: BaseException) -> bool:
    """Whether a destination error says the table (or dataset) is not there yet;
    each database words it its own way."""
    text = str(exc).lower()
    return any(hint in text for hint in ("does not exist", "doesn't exist", "not found", "no such table",
                                         "catalog error", "undefined"))


def row_counts(sql_client: Any, tables: Iterable[str]) -> dict[str, int]:
    """``COUNT(*)`` of each of ``tables`` (all of which exist)."""
    return {
        t: int(sql_client.execute_sql(f"SELECT COUNT(*) FROM {sql_client.make_qualified_table_name(t)}")[0][0])
        for t in tables
    }


def count_rows(pipeline: dlt.Pipeline, tables: Sequence[str]) -> dict[str, int]:
    """Row counts of the tables that exist at the destination."""
    present = schema_tables(pipeline).intersection(tables)
    if not present:
        return {}
    try:
        with pipeline.sql_client() as client:
            return row_counts(client, [t for t in tables if t in present])
    except Exception as exc:  # noqa: BLE001 - tables may not be created yet
        logger.debug("could not count rows: %s", type(exc).__name__)
        return {}


class DestinationSession:
    """What the sync asks the destination before a load, over one client."""

    def __init__(self, job_client: Any = None, existing: Optional[set[str]] = None) -> None:
        self.job_client = job_client
        self.existing = existing or set()

    def counts(self, tables: Sequence[str]) -> dict[str, int]:
        if self.job_client is None:
            return {}
        return row_counts(self.job_client.sql_client, [t for t in tables if t in self.existing])

    def column_kinds(self, tables: Iterable[str]) -> dict[str, dict[str, str]]:
        """table -> column -> dlt data type, as the destination holds them (another
        pipeline, the sync or the webhook processor, may have created columns this
        one's schema does not know)."""
        present = [t for t in tables if t in self.existing]
        if self.job_client is None or not present:
            return {}
        return {
            table: {name.lower(): column["data_type"] for name, column in columns.items() if column.get("data_type")}
            for table, columns in self.job_client.get_storage_tables(present) if columns
        }

    def fence(self, tables: set[str]) -> Optional[Callable]:
        if self.job_client is None or not tables:
            return None  # nothing stored before, or the destination fences itself (MongoDB)
        return SqlVersionFence(self.job_client.sql_client, tables).fresh


@contextlib.contextmanager
def destination_session(
    pipeline: dlt.Pipeline, profile: Profile, names: Sequence[str], first: bool, needed: bool = True
) -> Iterator[DestinationSession]:
    """One destination client for the extraction: which tables exist (first
    extraction only), row counts, and the version fence. It closes before the
    load, so no read transaction of ours is open while dlt alters tables."""
    if profile.documents or not needed:
        yield DestinationSession()  # MongoDB fences inside its own writes
        return
    # asked of the destination even when this pipeline has no schema yet: the
    # sync and the webhook processor are separate pipelines sharing tables
    with pipeline.destination_client() as job_client:
        yield DestinationSession(job_client, stored_tables(job_client, names) if first else None)


def normalized_row_counts(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Rows per table of the package the pipeline last normalized."""
    trace = pipeline.last_trace
    info = trace.last_normalize_info if trace is not None else None
    return dict(info.row_counts) if info is not None else {}


def schema_tables(pipeline: dlt.Pipeline) -> set[str]:
    """Tables this pipeline has loaded (its schema knows their columns)."""
    if not pipeline.default_schema_name:
        return set()
    return {name for name, table in pipeline.default_schema.tables.items() if table.get("columns")}


def after_load(
    pipeline: dlt.Pipeline,
    entities: Sequence[Entity],
    known: Optional[set[str]] = None,
    count: Sequence[str] = (),
    keys: Optional[Keys] = None,
) -> dict[str, int]:
    """Post-load integrity (no child rows of superseded versions, no tombstoned
    rows), then row counts of ``count``, in one destination session.

    ``known``: the tables that existed before the run; with the tables this
    pipeline loaded they are all there is (writers hold the dataset lock), so
    the destination need not be asked again.
    """
    if known is None:
        tables = existing_tables(pipeline, fenced_table_names(entities))
    else:
        tables = known | schema_tables(pipeline)
    if not tables:
        return {}
    with pipeline.sql_client() as client:
        ensure_key_indexes(client, pipeline.destination.destination_name, entities, tables)
        sweep_tombstoned(client, entities, tables, keys)
        prune_superseded_children(client, list(entities), tables, keys)
        return row_counts(client, [t for t in count if t in tables])
