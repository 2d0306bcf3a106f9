"""One sync run: build the source and pipeline, load, tidy, and account for it."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import time
from collections import Counter
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import dlt
import duckdb
import pyarrow as pa

from sources.makini import makini_source
from sources.makini.client import RetryPolicy
from sources.makini.report import SyncReport
from sources.makini.settings import Entity, resolve_entities

from sources.makini.spool import settle_spools
from sources.makini.walk import committed_positions

from .background_load import BackgroundLoad
from .children import Keys, prune_superseded_children
from .fence import SqlVersionFence, existing_tables, fenced_table_names, sweep_tombstoned
from .locking import dataset_lock
from .profiles import Profile, make_pipeline
from .recovery import drop_committed_extractions

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


def stored_tables(job_client: Any, names: Sequence[str]) -> set[str]:
    try:
        return {n for n, cols in job_client.get_storage_tables(list(names)) if cols}
    except Exception as exc:  # noqa: BLE001 - no dataset yet (e.g. a MySQL database not created)
        logger.debug("no stored tables: %s", type(exc).__name__)
        return set()


class DestinationSession:
    """What the sync asks the destination before a load, over one client."""

    def __init__(self, job_client: Any = None, existing: Optional[set[str]] = None) -> None:
        self.job_client = job_client
        self.existing = existing or set()

    def counts(self, tables: Sequence[str]) -> dict[str, int]:
        if self.job_client is None:
            return {}
        client = self.job_client.sql_client
        return {
            t: int(client.execute_sql(f"SELECT COUNT(*) FROM {client.make_qualified_table_name(t)}")[0][0])
            for t in tables if t in self.existing
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


class DatabaseUnavailable(Exception):
    """The destination's database cannot be opened (held by another process, say)."""


class RunDatabase:
    """For a DuckDB file, one connection held for the whole run.

    dlt opens the file for each load job and closes it when the last job
    returns it; each close checkpoints (so the staging copies were written
    into the file only to be deleted) and each open reads the catalog again.
    dlt treats a connection it is given as the caller's and never closes it,
    so the run closes it, once, at the end. Measured (5 alternating pairs):
    an incremental run 1.75 s against 1.94 s (medians), a full sync no
    different. The run holds the file for its whole length: the webhook
    processor opens it per batch, as before, and the dataset lock keeps the
    two apart; another process (the DuckDB CLI, say) cannot open the file
    until the run ends, where before it could between loads.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.connection: Optional[duckdb.DuckDBPyConnection] = None

    def __enter__(self) -> "RunDatabase":
        path = self.profile.duckdb_file()
        if path is not None:
            try:
                self.connection = self.profile.open_duckdb()
            except duckdb.Error as exc:
                raise DatabaseUnavailable(
                    f"cannot open the DuckDB file {path}: {exc} (if another process holds it, "
                    "close that process or run the sync when it is done)"
                ) from None
            self.profile = self.profile.with_settings(credentials=self.connection)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.connection is not None:
            self.connection.close()


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
    counts = {}
    with pipeline.sql_client() as client:
        sweep_tombstoned(client, entities, tables, keys)
        prune_superseded_children(client, list(entities), tables, keys)
        for table in count:
            if table in tables:
                rows = client.execute_sql(f"SELECT COUNT(*) FROM {client.make_qualified_table_name(table)}")
                counts[table] = int(rows[0][0])
    return counts


DEFAULT_ROWS_PER_LOAD = 300_000
M_ARENA_MAX = -8  # glibc mallopt parameter


def release_memory_eagerly() -> None:
    """Arrow's default pool keeps freed pages for reuse, which shows as peak RSS
    growing with data; the system allocator hands them back (measured: about
    100 MB lower peak on the full-sync benchmark, no measurable slowdown).
    glibc's per-thread arenas (dlt loads with a thread pool) are capped too."""
    pa.set_memory_pool(pa.system_memory_pool())
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)


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
    rows_per_load: Optional[int] = DEFAULT_ROWS_PER_LOAD,
    backfill: bool = False,
    checkpoints: bool = True,
) -> SyncResult:
    """Sync the chosen entities into ``profile``'s destination.

    The sync runs as a series of loads of at most ``rows_per_load`` rows each,
    so memory stays flat however large a connection is, and each load commits
    the walks' cursors with its data. Connection failures are collected in the
    result (the other connections still load); configuration and load
    failures raise.
    """
    started = time.monotonic()
    release_memory_eagerly()
    chosen = resolve_entities(entities)
    report = SyncReport()
    source_args: dict[str, Any] = {
        "entities": [e.table for e in chosen],
        "report": report,
        "max_rows_per_load": rows_per_load,
        "documents": profile.documents,
        "backfill": backfill,
    }
    if base_url is not None:
        source_args["base_url"] = base_url
    if api_token is not None:
        source_args["api_token"] = api_token
    if retry_policy is not None:
        source_args["retry_policy"] = retry_policy

    tables = table_names(chosen)
    loaded: Counter = Counter()
    with dataset_lock(profile.name), RunDatabase(profile) as database:
        pipeline = make_pipeline(database.profile, pipeline_name, progress=progress)
        spool_root = Path(pipeline.working_dir) / "makini_spool"
        if checkpoints:
            source_args["spool_root"] = str(spool_root)
        finish_pending_loads(pipeline, profile, chosen)
        # after the pending loads: a run killed between committing its package
        # and saving its local state left the newer state only in that package,
        # now in the destination; take it back before walking on
        pipeline.sync_destination()
        settle_spools(spool_root, committed_positions(resources_state(pipeline)))
        refresh = "drop_resources" if full_refresh else None
        only = None
        fenced: set[str] = set()  # set by the first extraction
        loading: Optional[BackgroundLoad] = None

        def loaded_and_tidied(schema_ahead: bool = False) -> dict[str, int]:
            """After a load: trim the spools, mend, count. ``schema_ahead``: the
            next package was extracted meanwhile, so the pipeline's schema names
            tables not loaded yet and the destination is asked which exist."""
            settle_spools(spool_root, committed_positions(resources_state(pipeline)))
            if profile.documents:
                return {}
            known = None if schema_ahead else existing - (set(tables) if full_refresh else set())
            return after_load(pipeline, chosen, known, tables)

        try:
            while True:
                first = only is None
                with destination_session(pipeline, profile, fenced_table_names(chosen), first,
                                         needed=first or bool(fenced)) as session:
                    if first:  # learn what the destination holds
                        existing, before = session.existing, ({} if full_refresh else session.counts(tables))
                        fenced = set() if full_refresh else existing
                    fence = session.fence(fenced)
                    source = makini_source(**source_args, fence=fence, only=only)
                    pipeline.extract(source, refresh=refresh, loader_file_format=profile.loader_file_format)
                if loading is not None:  # the previous package, loaded while this one was extracted
                    loading.wait()
                    loading, after = None, loaded_and_tidied(schema_ahead=True)
                pipeline.normalize()
                normalized = pipeline.last_trace.last_normalize_info
                loaded.update(normalized.row_counts if normalized else {})
                if report.unfinished and not fenced and not profile.documents:
                    # more to extract, and no fence reading the tables being loaded
                    loading = BackgroundLoad(pipeline, profile.load_workers)
                else:
                    profile.load(pipeline)
                    after = loaded_and_tidied()
                if not report.unfinished:
                    break
                only, report.unfinished = set(report.unfinished), set()
                refresh = None
        finally:
            if loading is not None:  # a failure meanwhile: never close the database under a load
                loading.join()
    if profile.documents:
        after = count_rows(pipeline, tables)

    result = SyncResult(profile.name, report, seconds=time.monotonic() - started)
    for table in tables:
        n = loaded.get(table, 0)
        inserted = max(after.get(table, 0) - before.get(table, 0), 0)
        result.tables[table] = TableStats(
            loaded=n, inserted=min(inserted, n), updated=max(n - inserted, 0), total=after.get(table, 0)
        )
    return result


def resources_state(pipeline: dlt.Pipeline) -> dict:
    return pipeline.state.get("sources", {}).get("makini", {}).get("resources", {})


def finish_pending_loads(pipeline: dlt.Pipeline, profile: Profile, entities: Sequence[Entity]) -> None:
    """Load what an interrupted run extracted but did not load (its state came with it)."""
    drop_committed_extractions(pipeline)
    if pipeline.has_pending_data:
        logger.warning("loading data a previous run extracted but did not load")
        pipeline.normalize()
        profile.load(pipeline)
        if not profile.documents:
            after_load(pipeline, entities)
