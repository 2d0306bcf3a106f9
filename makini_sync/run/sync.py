"""One sync run: build the source and pipeline, run the package loop, and account for it."""

from __future__ import annotations

import contextlib
import dataclasses
import ctypes
import logging
import resource
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import dlt
import pyarrow as pa

from sources.makini import dlt_seam
from sources.makini.client import RetryPolicy
from sources.makini.completeness import lookback_setting
from sources.makini.dlt_seam import source_resources_state
from sources.makini.report import SyncReport
from sources.makini.entity_config import load_registry
from sources.makini.spool import settle_spools
from sources.makini.walk import committed_positions

from makini_sync.run.defaults import DEFAULT_ROWS_PER_LOAD, DEFAULT_SECONDS_PER_LOAD
from makini_sync.run.destination_session import count_rows
from makini_sync.integrity.locking import WriterLocks, holder_name, pipeline_run_lock
from makini_sync.run.package_loop import PackageLoop
from makini_sync.destinations.profiles import DATASET_NAME, Profile, make_pipeline
from makini_sync.run.pending_packages import finish_pending_loads
from makini_sync.run.run_database import RunDatabase
from makini_sync.observe.sync_runs import record_sync_run, run_rows
from makini_sync.run.worker_connections import identified_connections
from sources.makini.fleet import DEFAULT_CONCURRENCY
from sources.makini.options import SourceOptions
from sources.makini.page_workers import DEFAULT_CONVERSION_PROCESSES, PageWorkers
from sources.makini.walk_outcomes import WalkOutcomes
from makini_sync.workers.naming import sync_pipeline_name, sync_pipeline_prefix
from makini_sync.workers.selection import WorkerSelection
from makini_sync.workers.state_adoption import adopt_bookmarks, forget_departed

logger = logging.getLogger(__name__)


@dataclass
class TableStats:
    loaded: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0  # versions read again and not loaded (at or under the bookmark's cap)
    total: int = 0


@dataclass
class SyncResult:
    destination: str
    report: SyncReport
    tables: dict[str, TableStats] = field(default_factory=dict)
    seconds: float = 0.0
    pipeline_name: str = ""
    connections: int = 0  # this worker's connections
    lock_wait_seconds: float = 0.0  # waiting for other writers' locks
    adopted: int = 0  # bookmarks taken over from other pipelines of the dataset (workers/state_adoption.py)
    labels: dict[str, str] = field(default_factory=dict)  # connection id -> its name in a connections file
    walked_whole: frozenset = frozenset()  # (connection, table) walked from first page to last (reconcile)
    worker_peak_rss_mb: float = 0.0  # the page workers' peak resident memory, summed (page_workers.py)

    @property
    def ok(self) -> bool:
        return not self.report.failures and not self.report.skipped


M_ARENA_MAX = -8  # glibc mallopt parameter


def release_memory_eagerly() -> None:
    """Arrow's default pool keeps freed pages for reuse, which shows as peak RSS
    growing with data; the system allocator hands them back, for a lower peak
    at no measurable slowdown (benchmarks/sync_benchmark.py).
    glibc's per-thread arenas (dlt loads with a thread pool) are capped too."""
    pa.set_memory_pool(pa.system_memory_pool())
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)


def allow_open_files_for_a_fleet() -> None:
    """Each connection keeps its keep-alive sockets until the run ends, two sessions each:
    a fleet of a thousand needs more than the 1,024 files many hosts allow by default,
    so the soft limit goes up to the hard one (raising the hard one needs privileges)."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def run_page_workers(given: Optional[PageWorkers], processes: int, collect_versions: bool) -> Iterator[PageWorkers]:
    """The run's page workers: the caller's, left running; else ``processes`` of its own, stopped
    with the run. Reconcile (``collect_versions``) uses none: its pages keep the usual path."""
    if given is not None and not collect_versions:
        yield given
        return
    with PageWorkers(0 if collect_versions else processes) as own:
        yield own


def run_sync(
    profile: Profile,
    *,
    base_url: Optional[str] = None,
    api_token: Any = None,
    entities: Optional[Sequence[str]] = None,
    full_refresh: bool = False,
    selection: Optional[WorkerSelection] = None,
    pipeline_name: Optional[str] = None,
    progress: Any = None,
    retry_policy: Optional[RetryPolicy] = None,
    rows_per_load: Optional[int] = DEFAULT_ROWS_PER_LOAD,
    seconds_per_load: Optional[float] = DEFAULT_SECONDS_PER_LOAD,
    backfill: bool = False,
    checkpoints: bool = True,
    collect_versions: bool = False,
    dry_run: bool = False,
    stored_versions: Optional[dict] = None,
    pipeline: Optional[dlt.Pipeline] = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    connections_file: Optional[str] = None,
    conversion_processes: int = DEFAULT_CONVERSION_PROCESSES,
    page_workers: Optional[PageWorkers] = None,
) -> SyncResult:
    """Sync the chosen entities into ``profile``'s destination.

    The sync runs as a series of loads of at most ``rows_per_load`` rows each,
    so memory stays flat however large a connection is, and each load commits
    the walks' cursors with its data; a load also starts once ``seconds_per_load``
    passed with rows fetched, so a slow or failing connection never holds the
    others' data back for long. Connection failures are collected in the
    result (the other connections still load); configuration and load
    failures raise. ``collect_versions``, ``dry_run`` and ``stored_versions``
    serve reconcile (``makini_source``); a dry run keeps no checkpoints.
    ``selection``: this worker's connections (all, or one ``--shard``); it names
    the pipeline (``workers/naming.py``) unless ``pipeline_name`` is given.
    ``pipeline``: a dlt pipeline of the caller's to run in (``own_pipeline.py``);
    by default the profile's own. ``concurrency``: walks waiting on the network
    at once, across connections and entities (``sources/makini/fleet.py``).
    ``connections_file``: the fleet's connections (``sources/makini/connections_file.py``),
    when ``api_token`` is not given; default: dlt config's ``sources.makini.connections_file``.
    ``conversion_processes``: worker processes that parse and prepare pages Arrow's reader
    refuses (``sources/makini/page_workers.py``); 0: the sync's own process does.
    ``page_workers``: such workers of the caller's, kept warm across runs (not closed here).
    """
    started, started_at, own_pipeline = time.monotonic(), datetime.now(timezone.utc), pipeline
    dlt_seam.require()  # an incompatible dlt fails here, naming what it lacks
    release_memory_eagerly()
    allow_open_files_for_a_fleet()
    registry = load_registry()  # bad entity config fails here, before any request
    lookback_setting(dlt.config.get("sources.makini.lookback_seconds"))  # and a bad lookback
    chosen = registry.resolve(entities)
    report = SyncReport()
    outcomes = WalkOutcomes()
    options = SourceOptions(
        report=report, retry_policy=retry_policy, max_rows_per_load=rows_per_load,
        max_seconds_per_load=seconds_per_load, documents=profile.documents,
        backfill=backfill, registry=registry, text_without_nul=profile.text_without_nul,
        collect_versions=collect_versions, dry_run=dry_run, stored_versions=stored_versions, concurrency=concurrency,
        outcomes=outcomes,
    )

    selection = selection or WorkerSelection()
    dataset = pipeline.dataset_name if pipeline is not None else DATASET_NAME
    name = pipeline.pipeline_name if pipeline is not None else (
        pipeline_name or sync_pipeline_name(profile.name, dataset, selection.label))
    # who the worker's connections are, before any lock: the locks are taken per connection
    connections = identified_connections(base_url, api_token, selection, retry_policy or RetryPolicy(), report,
                                         concurrency, connections_file)
    if connections.fields:  # a connections file's field names, now that its connections' ids are known
        options = dataclasses.replace(options, registry=load_registry(file_fields=connections.fields))
    source_args = {"base_url": connections.base_url, "api_token": connections.tokens,
                   "entities": [e.table for e in chosen],
                   "connections": connections.opened}  # identified: the source asks no id again
    with pipeline_run_lock(name), WriterLocks(profile, dataset, holder_name(name), pipeline) as locks, \
            locks.connections(connections.ids), RunDatabase(profile if pipeline is None else None) as database:
        if pipeline is None:
            assert database.profile is not None  # RunDatabase keeps the profile it was given
            pipeline = make_pipeline(database.profile, name, dataset, progress=progress)
        spool_root = Path(pipeline.working_dir) / "makini_spool"
        if checkpoints and not dry_run:
            options = dataclasses.replace(options, spool_root=str(spool_root))
        with locks.loading():
            pipeline = finish_pending_loads(pipeline, profile, chosen, report.set_aside)
        # after the pending loads: a run killed between committing its package
        # and saving its local state left the newer state only in that package,
        # now in the destination; take it back before walking on
        pipeline.sync_destination()
        if api_token is None and not report.failures:
            # the worker's whole configured selection answered: any other connection moved away
            forget_departed(pipeline, connections.ids)
        adopted = {} if full_refresh or backfill or dry_run or profile.documents else adopt_bookmarks(
            pipeline, sync_pipeline_prefix(profile.name, dataset), connections.ids, [e.table for e in chosen])
        settle_spools(spool_root, committed_positions(source_resources_state(pipeline)))
        with run_page_workers(page_workers, conversion_processes, collect_versions) as workers:
            loop = PackageLoop(pipeline, profile, chosen, source_args,
                               dataclasses.replace(options, page_workers=workers), spool_root, full_refresh, locks,
                               connections.ids)
            if connections.tokens:
                loop.run()
        report.log_schema_changes()
        if own_pipeline is None and not (collect_versions or dry_run):  # reconcile records its own runs
            # while the run's database is open and its locks held: no second open of the file
            record_sync_run(profile, run_rows(
                report, pipeline, connections.ids, [e.table for e in chosen], started_at,
                datetime.now(timezone.utc), selection.label), via=database.profile)
    after = count_rows(pipeline, loop.tables) if profile.documents else loop.after
    result = SyncResult(profile.name, report, seconds=time.monotonic() - started, pipeline_name=name,
                        connections=len(connections.tokens), lock_wait_seconds=locks.waited, adopted=len(adopted),
                        labels=connections.labels, walked_whole=frozenset(outcomes.walked_whole),
                        worker_peak_rss_mb=workers.peak_rss_mb)
    unchanged: dict[str, int] = {}
    for (_, table), count in report.unchanged.items():
        unchanged[table] = unchanged.get(table, 0) + count
    for table in loop.tables:
        n = loop.loaded.get(table, 0)
        inserted = max(after.get(table, 0) - loop.before.get(table, 0), 0)
        result.tables[table] = TableStats(
            loaded=n, inserted=min(inserted, n), updated=max(n - inserted, 0), unchanged=unchanged.get(table, 0),
            total=after.get(table, 0),
        )
    return result
