"""Reconcile: make the warehouse equal what Makini holds, per connection and entity.

It compares the set of (id, ``updated_at``) the API lists with the
warehouse's, not counts:

* **missing** rows (listed, not stored) are loaded;
* **stale** rows (stored at an older ``updated_at``) are replaced;
* **ghosts** (stored, no longer listed: a hard delete whose webhook was lost)
  are deleted through the tombstone path of ``record.deleted``, their line
  items with them;
* rows the warehouse holds at a *newer* version than the API lists (a webhook
  that overtook the list) are counted and left alone.

One pass: a backfill walk of every record, merged behind the version fence
(so only missing and stale rows load), that also notes every version it saw.
The API cannot list ids alone, so that walk fetches whole records: a full
walk is the price, and the README recommends a nightly schedule. Deletes are
inferred only from a walk that went from the first page to the last in this
run; a walk that failed or stopped infers none. Each run is recorded in
``_makini_reconcile_runs``.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional, Sequence

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from sources.makini.bookmark import iso_ms, parse_iso
from sources.makini.client import RetryPolicy
from sources.makini.connections import open_connections, parse_tokens
from sources.makini.entity_config import load_registry
from sources.makini.settings import CONNECTION_COLUMN, ID_COLUMN, UPDATED_AT_COLUMN, Entity

from makini_sync.integrity.deltas import Delete, load_deltas
from makini_sync.integrity.fence import as_utc
from makini_sync.integrity.locking import WriterLocks, holder_name, pipeline_run_lock
from makini_sync.destinations.profiles import DATASET_NAME, Profile, make_pipeline
from makini_sync.workers.naming import sync_pipeline_name, writer_pipeline_name
from makini_sync.workers.selection import WorkerSelection
from makini_sync.observe.run_records import append_records
from makini_sync.run.destination_session import is_missing_table
from makini_sync.run.sync import run_sync

logger = logging.getLogger(__name__)

RUNS_TABLE = "_makini_reconcile_runs"
RECONCILE_PIPELINE = "makini_reconcile"  # its deletes: the deltas' schema alone, as load_deltas expects
RUNS_PIPELINE = "makini_reconcile_runs"
VERSION_TYPE = pa.timestamp("us", tz="UTC")


@dataclass
class Drift:
    """What one comparison of API and warehouse versions found."""

    missing: list[str]
    stale: list[str]
    ghosts: list[tuple[str, Optional[datetime]]]  # (id, the stored updated_at)
    newer_in_warehouse: int


@dataclass
class Reconciled:
    """One connection and table: what reconcile found and did."""

    connection_id: str
    table: str
    missing: int = 0
    stale: int = 0
    ghosts: int = 0
    newer_in_warehouse: int = 0
    loaded: int = 0
    deleted: int = 0
    fetched_records: int = 0
    fetched_pages: int = 0
    complete: bool = False  # the walk went from the first page to the last: deletes may be inferred
    error: Optional[str] = None


@dataclass
class ReconcileRun:
    run_id: str
    started_at: datetime
    finished_at: datetime
    dry_run: bool
    results: list[Reconciled]

    @property
    def ok(self) -> bool:
        return all(r.complete and r.error is None for r in self.results)


def version_table(ids: Sequence[str], stamps: Sequence[Any]) -> pa.Table:
    return pa.table({ID_COLUMN: pa.array(ids, pa.string()),
                     UPDATED_AT_COLUMN: pa.array([as_utc(s) if s is not None else None for s in stamps],
                                                 VERSION_TYPE)})


def as_versions(table: pa.Table) -> pa.Table:
    """(id, updated_at) with the one timestamp type the comparison uses."""
    stamps = table[UPDATED_AT_COLUMN]
    if pa.types.is_string(stamps.type) or pa.types.is_large_string(stamps.type):
        stamps = pa.array([parse_iso(s) if s else None for s in stamps.to_pylist()], VERSION_TYPE)
    elif stamps.type != VERSION_TYPE:
        stamps = stamps.cast(VERSION_TYPE)
    return pa.table({ID_COLUMN: table[ID_COLUMN].cast(pa.string()), UPDATED_AT_COLUMN: stamps})


def compare(api: pa.Table, warehouse: pa.Table) -> Drift:
    """Missing, stale and ghost rows between the API's versions and the warehouse's."""
    listed = as_versions(api).group_by(ID_COLUMN).aggregate([(UPDATED_AT_COLUMN, "max")])
    listed = pa.table({ID_COLUMN: listed[ID_COLUMN], "api_at": listed[f"{UPDATED_AT_COLUMN}_max"]})
    stored = as_versions(warehouse)
    stored = pa.table({ID_COLUMN: stored[ID_COLUMN], "stored_at": stored[UPDATED_AT_COLUMN],
                       "stored": pa.array([True] * stored.num_rows, pa.bool_())})
    both = listed.join(stored, keys=ID_COLUMN, join_type="full outer")
    in_api, in_store = pc.is_valid(both["api_at"]), pc.is_valid(both["stored"])
    ids = both[ID_COLUMN]
    missing = pc.and_(in_api, pc.invert(in_store))
    ghosts = pc.and_(in_store, pc.invert(in_api))
    shared = pc.and_(in_api, in_store)
    stale = pc.and_(shared, pc.fill_null(pc.greater(both["api_at"], both["stored_at"]), True))
    newer = pc.and_(shared, pc.fill_null(pc.less(both["api_at"], both["stored_at"]), False))
    return Drift(
        missing=sorted(ids.filter(missing).to_pylist()),
        stale=sorted(ids.filter(stale).to_pylist()),
        ghosts=sorted(zip(ids.filter(ghosts).to_pylist(), both["stored_at"].filter(ghosts).to_pylist(), strict=True)),
        newer_in_warehouse=pc.sum(newer.cast(pa.int64())).as_py() or 0,
    )


def warehouse_versions(profile: Profile, wanted: Sequence[tuple[str, Entity]]) -> dict[tuple[str, str], pa.Table]:
    """The (id, updated_at) the warehouse stores per (connection, entity), over one session."""
    if profile.documents:
        import pymongo

        uri = str(dlt.secrets[f"destination.{profile.name}.credentials"])
        db: Any = pymongo.MongoClient(uri).get_default_database(default="makini")
        out = {}
        for connection_id, entity in wanted:
            docs = list(db[entity.table].find({CONNECTION_COLUMN: connection_id}, {ID_COLUMN: 1, UPDATED_AT_COLUMN: 1}))
            out[(connection_id, entity.table)] = version_table([d[ID_COLUMN] for d in docs],
                                                               [d.get(UPDATED_AT_COLUMN) for d in docs])
        return out
    pipeline = make_pipeline(profile, writer_pipeline_name(RECONCILE_PIPELINE, profile.name, DATASET_NAME))
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return {(c, e.table): version_table([], []) for c, e in wanted}
        return {(c, e.table): _stored_in_table(client, e, c) for c, e in wanted}


def _stored_in_table(client: Any, entity: Entity, connection_id: str) -> pa.Table:
    q = client.escape_column_name
    sql = (f"SELECT {q(ID_COLUMN)}, {q(UPDATED_AT_COLUMN)} FROM {client.make_qualified_table_name(entity.table)}"
           f" WHERE {q(CONNECTION_COLUMN)} = %s")
    chunks = []
    try:
        with client.execute_query(sql, connection_id) as cursor:
            # in chunks, each made Arrow at once: all rows as Python tuples would dwarf the walk's memory
            for rows in cursor.iter_fetch(SNAPSHOT_CHUNK):
                chunks.append(version_table([r[0] for r in rows], [r[1] for r in rows]))
    except Exception as exc:  # noqa: BLE001 - the table does not exist yet: nothing stored
        if not is_missing_table(exc):
            raise
        return version_table([], [])
    return pa.concat_tables(chunks) if chunks else version_table([], [])


SNAPSHOT_CHUNK = 50_000


def skip_map(versions: pa.Table) -> dict[str, str]:
    """id -> updated_at as the API writes it (ISO, milliseconds, ``Z``), for the walk's skip."""
    known = versions.filter(pc.is_valid(versions[UPDATED_AT_COLUMN]))
    stamps = pc.strftime(known[UPDATED_AT_COLUMN].cast(pa.timestamp("ms", tz="UTC"), safe=False),
                         format="%Y-%m-%dT%H:%M:%SZ")
    return dict(zip(known[ID_COLUMN].to_pylist(), stamps.to_pylist(), strict=True))



def reconcile(
    profile: Profile,
    base_url: Optional[str] = None,
    api_token: Any = None,
    entities: Optional[Sequence[str]] = None,
    retry_policy: Optional[RetryPolicy] = None,
    dry_run: bool = False,
    selection: Optional[WorkerSelection] = None,
) -> ReconcileRun:
    """Find and repair drift for every connection of ``api_token`` (``dry_run``: find only).
    ``selection``: this worker's share of them (``--shard``), as for the sync.
    The connections' writer locks are held from reading the warehouse's
    versions to the last delete, so no other writer's row is taken for a ghost."""
    registry = load_registry()
    job = ReconcileJob(
        profile, base_url if base_url is not None else dlt.config.get("sources.makini.base_url"),
        registry.resolve(entities), retry_policy or RetryPolicy(), dry_run, selection or WorkerSelection(),
        datetime.now(timezone.utc))
    api_token = api_token if api_token is not None else dlt.secrets.get("sources.makini.api_token")
    tokens = job.selection.pick(parse_tokens(api_token))
    name = writer_pipeline_name(RECONCILE_PIPELINE, profile.name, DATASET_NAME)
    with contextlib.ExitStack() as held:
        # as a sync takes them: its worker's run first, then the writer locks
        held.enter_context(pipeline_run_lock(sync_pipeline_name(profile.name, DATASET_NAME, job.selection.label)))
        locks = held.enter_context(WriterLocks(profile, DATASET_NAME, holder_name(name)))
        walks = wanted_walks(job, tokens, registry)
        # every connection the nested sync will walk is locked here first, in order
        held.enter_context(locks.connections(walks.identified.values()))
        run = _reconcile_locked(job, locks, walks)
    for result in run.results:
        if result.missing or result.stale or result.ghosts:
            logger.warning("reconcile %s %s: %d missing, %d stale, %d ghost(s)%s", result.connection_id,
                           result.table, result.missing, result.stale, result.ghosts,
                           " (dry run: nothing changed)" if dry_run else "")
    return run


@dataclass(frozen=True)
class ReconcileJob:
    """What one reconcile run was asked to do."""

    profile: Profile
    base_url: Any
    chosen: Sequence[Entity]
    policy: RetryPolicy
    dry_run: bool
    selection: WorkerSelection
    started: datetime


@dataclass
class Walks:
    """The connections that answered (token -> id), the (connection, entity) pairs to
    compare, and a result for each (a failed connection's holds its error)."""

    identified: dict[str, str] = field(default_factory=dict)
    wanted: list[tuple[str, Entity]] = field(default_factory=list)
    results: dict[tuple[str, str], Reconciled] = field(default_factory=dict)


def wanted_walks(job: ReconcileJob, tokens: list[str], registry: Any) -> Walks:
    walks = Walks()
    opened = open_connections(job.base_url, tokens, job.policy) if tokens else []
    for token, connection in zip(tokens, opened, strict=True):
        try:
            connection_id = connection.identify()
        except Exception as exc:  # noqa: BLE001 - reported; the other connections go on
            walks.results[(connection.name, "*")] = Reconciled(connection.name, "*", error=str(exc))
            continue
        walks.identified[token] = connection_id
        for entity in job.chosen:
            if registry.for_connection(connection_id, entity.table) is None:
                continue
            walks.wanted.append((connection_id, entity))
            walks.results[(connection_id, entity.table)] = Reconciled(connection_id, entity.table)
    return walks


def _reconcile_locked(job: ReconcileJob, locks: WriterLocks, walks: Walks) -> ReconcileRun:
    """Compare and repair, under the connections' locks."""
    profile, chosen, dry_run, started = job.profile, job.chosen, job.dry_run, job.started
    wanted, results = walks.wanted, walks.results
    # read before the walk: a row stored later cannot be taken for a ghost
    stored = warehouse_versions(profile, wanted)

    # versions the warehouse already holds are skipped before the fence's lookups: most rows, in the usual case
    skip = {key: skip_map(table) for key, table in stored.items()}
    synced = run_sync(profile, base_url=job.base_url, api_token=list(walks.identified),
                      entities=[e.table for e in chosen], backfill=True, retry_policy=job.policy,
                      collect_versions=True, dry_run=dry_run, stored_versions=skip,
                      pipeline_name=sync_pipeline_name(profile.name, DATASET_NAME, job.selection.label))
    report = synced.report
    failures = {(f.connection, f.entity): str(f) for f in report.failures}
    by_table = {e.table: e for e in chosen}
    deletes: list[Delete] = []
    for key, result in results.items():
        if key not in stored:
            continue
        seen = report.versions.get(key, [])
        api = pa.concat_tables(seen) if seen else version_table([], [])
        drift = compare(api, stored[key])
        result.missing, result.stale, result.ghosts = len(drift.missing), len(drift.stale), len(drift.ghosts)
        result.newer_in_warehouse = drift.newer_in_warehouse
        result.fetched_records, result.fetched_pages = api.num_rows, report.pages[key]
        result.loaded = 0 if dry_run else max(api.num_rows - report.unchanged[key], 0)
        result.error = failures.get(key) or failures.get((key[0], "connection"))
        result.complete = key in synced.walked_whole and result.error is None
        if not result.complete:
            result.ghosts = 0  # unknown: a record not seen by a partial walk may be listed still
            continue  # deleting on incomplete evidence is the worst outcome
        if not dry_run:
            for record_id, stored_at in drift.ghosts:
                # the tombstone covers the version the warehouse held, so a newer re-creation still lands
                deleted_at = iso_ms(stored_at) if stored_at is not None else iso_ms(started)
                deletes.append(Delete(key[0], by_table[key[1]], record_id, deleted_at))
            result.deleted = len(drift.ghosts)
    if deletes:
        load_deltas(profile, deletes, pipeline_name=RECONCILE_PIPELINE, locks=locks)
    run = ReconcileRun(uuid.uuid4().hex, started, datetime.now(timezone.utc), dry_run, list(results.values()))
    record_run(profile, run)
    return run


def record_run(profile: Profile, run: ReconcileRun) -> None:
    """Append the run's findings to ``_makini_reconcile_runs`` (one row per connection and table)."""
    rows = []
    for result in run.results:
        row = asdict(result)
        row["table_name"] = row.pop("table")
        rows.append({"run_id": run.run_id, "started_at": run.started_at, "finished_at": run.finished_at,
                     "dry_run": run.dry_run, **row})
    append_records(profile, RUNS_TABLE, rows, RUNS_PIPELINE)


def render_run(run: ReconcileRun) -> str:
    """The operator's summary: per connection and table, what was found and done."""
    mode = "dry run, nothing changed" if run.dry_run else "repaired"
    seconds = (run.finished_at - run.started_at).total_seconds()
    lines = [f"makini reconcile ({mode}): {seconds:.1f} s, run {run.run_id}",
             f"  {'connection':<16}{'table':<30}{'missing':>8}{'stale':>8}{'ghosts':>8}{'newer':>8}"
             f"{'loaded':>8}{'deleted':>8}{'fetched':>9}  status"]
    for r in run.results:
        status = "ok" if r.complete and not r.error else f"INCOMPLETE: {r.error or 'the walk did not finish'}"
        lines.append(f"  {r.connection_id:<16}{r.table:<30}{r.missing:>8}{r.stale:>8}{r.ghosts:>8}"
                     f"{r.newer_in_warehouse:>8}{r.loaded:>8}{r.deleted:>8}{r.fetched_records:>9}  {status}")
    fetched = sum(r.fetched_records for r in run.results)
    pages = sum(r.fetched_pages for r in run.results)
    lines.append(f"  fetched {fetched} whole records in {pages} pages: the API cannot list ids alone, "
                 "so reconcile walks every record (schedule it nightly)")
    return "\n".join(lines)
