"""Walking one entity of one connection: pages in, Arrow tables out, bookmark kept.

A walk may span several loads. ``LoadBudget`` ends an extraction once enough
rows are in it; the walk then saves its cursor and watermark in dlt state
(``walk`` next to the bookmark) and the next extraction goes on from there.
State is committed with the load package, so a cursor never advances past data
that is not durable: rerun after a crash and the walk resumes from the last
committed cursor. A cursor that expired meanwhile (``INVALID_CURSOR``) ends the
walk at what it had seen, and a new walk starts from that bookmark.
"""

from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Optional

import dlt
import pyarrow as pa

from .bookmark import Bookmark, Watermark, iso_ms
from .client import raise_for_makini_error
from .connections import Connection
from .errors import InvalidCursor
from .paginator import MakiniCursorPaginator
from .fleet import PAUSED, Fleet, next_page
from .page_feed import END
from .spool import Spool, SpooledPage, SpooledPages
from .walk_outcomes import WalkOutcomes
from .walk_position import STATE_KEY as WALK_KEY, WalkPosition, walk_base
from .column_kinds import ARROW_CAST_ERRORS, ColumnKinds
from .page_workers import PageWorkers, PreparedPage, pages_ready
from .records import PageConverter
from .report import SyncReport
from .settings import ID_COLUMN, UPDATED_AT_COLUMN, Entity
from .table_hints import entity_hints, schema_change_rows

logger = logging.getLogger(__name__)

# drops rows not newer than the destination's: (entity, tables by name) -> tables
Fence = Callable[[Entity, dict], dict]


@dataclass
class LoadBudget:
    """How much one extraction (one load package) may take; shared by resources.

    ``rows`` bounds memory. ``seconds`` bounds how long rows already fetched wait
    for their load: once it has passed and the package holds something, walks
    pause at their next page or while they wait for one (a connection deep in
    retries, a slow one), so the others' data lands meanwhile.
    """

    rows: Optional[int] = None  # None: no limit
    seconds: Optional[float] = None  # None: no limit
    spent: int = 0
    started: float = field(default_factory=time.monotonic)

    def spend(self, rows: int) -> None:
        self.spent += rows

    @property
    def exhausted(self) -> bool:
        return self.rows is not None and self.spent >= self.rows or self.overdue

    @property
    def overdue(self) -> bool:
        """The package holds rows and its time is up: walks stop waiting for their next page."""
        return self.seconds is not None and self.spent > 0 and time.monotonic() - self.started >= self.seconds


@dataclass
class EntityWalk:
    """Everything a walk of one entity needs besides the connection."""

    entity: Entity
    report: SyncReport
    budget: LoadBudget
    fence: Optional[Fence] = None
    documents: bool = False  # keep children embedded (document stores)
    backfill: bool = False  # walk everything, ignoring the bookmark (reconcile)
    spool_root: Optional[Path] = None  # page checkpoints (spool.py); None: off
    text_without_nul: bool = False  # the destination's text cannot hold U+0000 (column_kinds.py)
    lookback: Optional[timedelta] = None  # below the completeness bound (completeness.py); None: its default
    collect_versions: bool = False  # note every (id, updated_at) seen and whole walks (reconcile)
    # (connection, table) -> {id: updated_at} the destination stores: a backfill skips those versions (reconcile)
    stored_versions: Optional[dict] = None
    dry_run: bool = False  # nothing is yielded: a record seen twice needs no new package
    fleet: Fleet = field(default_factory=Fleet)  # the extraction's walks side by side (fleet.py)
    outcomes: WalkOutcomes = field(default_factory=WalkOutcomes)  # what the run decides from (walk_outcomes.py)
    workers: Optional[PageWorkers] = None  # prepare pages Arrow's reader refused (page_workers.py); None: here

    def __post_init__(self) -> None:
        self.hints = entity_hints(self.entity)
        self.kinds = ColumnKinds()

    def learn_kinds(self, schema_tables: dict, stored: Optional[dict] = None) -> None:
        """Column kinds from the pipeline's schema and the destination (before the first walk)."""
        self.kinds = ColumnKinds.from_schema(schema_tables, self.hints, stored, self.text_without_nul)

    def run(self, connection_id: str, connection: Connection, state: dict,
            entity: Optional[Entity] = None) -> Iterator[Any]:
        """Yield this connection's changed records; ``state`` is its slot in dlt state.
        ``entity``: the entity as this connection names its fields (default ``self.entity``)."""
        while True:
            try:
                yield from self._walk(connection_id, connection, state, entity or self.entity)
                return
            except InvalidCursor:
                walk = state.pop(WALK_KEY, None)
                if not walk:
                    raise
                # the saved cursor expired: keep what the walk saw, restart from there
                bookmark = Bookmark.from_state(state)
                state.update(Watermark.from_state(bookmark, walk).next_bookmark().to_state())
                logger.warning(
                    "cursor of %s %s expired; restarting from modified_after=%s",
                    self.entity.table, connection_id, state.get("modified_after"),
                )

    def _walk(self, connection_id: str, connection: Connection, state: dict, entity: Entity) -> Iterator[Any]:
        if self.budget.exhausted:
            self.outcomes.unfinished.add((connection_id, entity.table))
            return
        saved = WalkPosition.from_state(state)
        from_scratch = saved.backfill if saved else self.backfill
        bookmark = Bookmark() if from_scratch else Bookmark.from_state(state)
        stored = (self.stored_versions or {}).get((connection_id, entity.table)) if from_scratch else None
        skip = Bookmark(None, stored) if stored else bookmark  # versions not to load again
        watermark = saved.watermark if saved else None
        params: dict[str, Any] = {"limit": entity.max_page_size}
        if bookmark.modified_after:
            params["modified_after"] = bookmark.modified_after
        base = walk_base(saved.cursor if saved else None, bookmark.modified_after, from_scratch)
        spool = Spool(self.spool_root, connection_id, entity.table) if self.spool_root else None
        replay = spool.load(base) if spool else SpooledPages(None, [])
        if spool and not replay:
            spool.begin(base)  # written by the feed thread with the first page worth keeping
        resume = replay.last_cursor if replay else base["cursor"]
        walk_key = (connection_id, entity.table)
        if self.collect_versions and from_scratch and base["cursor"] is None and not replay:
            # whole evidence only from a walk that fetched its first page in this run
            # (a spool replays pages fetched before, which miss what was published since)
            self.outcomes.started_whole.add(walk_key)
        converter = PageConverter(entity, connection_id, documents=self.documents, kinds=self.kinds)
        batches = Batches(self.hints)

        def fetched() -> Iterator[Any]:
            """The completeness bound (read before the first page: it bounds what the
            walk sees), then spooled pages, then live ones, each ready to use (``ready_to_use``)
            and spooled before it is used."""
            yield connection.completeness(self.lookback)
            yield from ready_to_use(iter(replay))
            if replay and resume is None:
                return  # the last page was already spooled
            paginator = MakiniCursorPaginator(resume_cursor=resume)
            connection.client.page_schemas.child_fields[entity.path] = frozenset(c.field for c in entity.children)
            if not self.documents:
                connection.client.page_schemas.key_fields[entity.path] = frozenset(
                    {entity.primary_key, entity.updated_at, entity.deleted_at})
            connection.client.bodies_kept = True  # parsed in ready_to_use, on this thread or in a worker

            def live() -> Iterator[SpooledPage]:
                for page in connection.client.paginate(
                    entity.path, params=params, paginator=paginator, hooks={"response": [raise_for_makini_error]}
                ):
                    yield SpooledPage(
                        page[0].records, paginator.cursor, paginator.total_count,
                        page.response.headers.get("Date"), page.response.headers.get("X-Request-Id"), page[0].path,
                    )

            for spooled in ready_to_use(live()):
                # spooled even when the walk has just ended: its next stretch takes the page from
                # here (PageFeed.close waits for this thread, so it never writes into that stretch's log)
                if spool is not None and not (spool.empty and spooled.cursor is None):
                    # a stretch of one page (most walks of a small connection) keeps nothing: it
                    # never pauses, and a rerun after a crash fetches that one page again (the bound)
                    spool.append(spooled)
                yield spooled

        workers = None if self.collect_versions else self.workers  # reconcile reads the records themselves

        def ready_to_use(pages: Iterator[Any]) -> Iterator[Any]:
            return pages_ready(pages, workers, entity, connection_id, self.documents)

        def pause(cursor: Optional[str]) -> Iterator[Any]:
            """End this stretch before the page ``cursor`` fetches; the next extraction goes on from it."""
            assert watermark is not None  # a stretch pauses after its first page
            yield from batches.flush()
            state[WALK_KEY] = WalkPosition(cursor, from_scratch, watermark).to_state()
            self.outcomes.unfinished.add(walk_key)

        feed = self.fleet.feed(fetched)
        try:
            bound = yield from next_page(feed, lambda: self.budget.overdue)
            if bound is PAUSED:  # the package is due before this walk's first answer
                self.outcomes.unfinished.add(walk_key)
                return
            bound = bound.or_last_known(state.get("completeness_bound"))
            in_package: set = set()  # ids this stretch yielded: one version per key in a package
            position = base["cursor"]  # the cursor that fetched the page in hand
            while True:
                page = yield from next_page(feed, lambda: self.budget.overdue)
                if page is END:
                    break
                if page is PAUSED:  # the package is due while this walk waits for its next page
                    if watermark is None:
                        self.outcomes.unfinished.add(walk_key)
                    else:
                        yield from pause(position)
                    return
                if bound.synced_at is not None:  # kept once the walk takes a page, not before
                    state["completeness_bound"] = iso_ms(bound.synced_at)
                if self.budget.exhausted and page.cursor is not None:
                    # other walks filled the package while this page was on its way: it is
                    # spooled, and the next stretch starts with it (a stretch's only page,
                    # which is not spooled, is taken now rather than fetched again)
                    if watermark is None:  # the walk's first page: the next stretch starts the walk with it
                        watermark = Watermark(bookmark, bound.cap(server_time(page.date)))
                    yield from pause(position)
                    return
                next_cursor, request_id = page.cursor, page.request_id
                if watermark is None:
                    watermark = Watermark(bookmark, bound.cap(server_time(page.date)))
                if self.collect_versions:
                    self.report.saw_versions(connection_id, entity.table, served_versions(page.records, entity))
                prepared = page.records.prepared if isinstance(page.records, PreparedPage) else None
                if prepared is not None and skip.loads_any(prepared.tables[entity.table]):
                    page.records, prepared = page.records.page.records(), None  # the usual path drops those
                if prepared is not None:
                    tables = converter.land(prepared, request_id)
                    seen = prepared.rows
                elif isinstance(page.records, pa.Table):
                    records = skip.drop_loaded(page.records, entity.primary_key, entity.updated_at)
                    tables = converter.convert_arrow(records, request_id)
                    seen = page.records.num_rows
                else:
                    fresh = [
                        r for r in page.records
                        if not (isinstance(r, dict) and skip.already_loaded(
                            str(r.get(entity.primary_key)), r.get(entity.updated_at)))
                    ]
                    tables = converter.convert(fresh, request_id)
                    seen = len(page.records)
                self.report.paths[conversion_path(page.path, converter)] += 1
                changes = self.kinds.take_changes()
                if changes:
                    self.report.schema_changed(changes)
                    yield schema_change_rows(changes)
                main = tables[entity.table]
                ids = main[ID_COLUMN].to_pylist() if ID_COLUMN in main.column_names else []
                if position is not None and not self.dry_run and not in_package.isdisjoint(ids):
                    # A record changed while the walk paged came round again: the package
                    # ends before this page, so the next one holds the newer version and no
                    # load ever sees one key twice (a MySQL merge fails on that).
                    yield from pause(position)
                    return
                in_package.update(ids)
                position = next_cursor
                watermark.observe(tables[entity.table])
                self.report.page(connection_id, entity.table, tables[entity.table].num_rows)
                if self.fence is not None:
                    tables = self.fence(entity, tables)
                self.report.unchanged[(connection_id, entity.table)] += seen - tables[entity.table].num_rows
                self.fleet.progress.records(seen)
                for name, table in tables.items():
                    self.budget.spend(table.num_rows)
                    yield from batches.add(name, table)
                if next_cursor and self.budget.exhausted:
                    yield from pause(next_cursor)
                    return
            yield from batches.flush()
            state.pop(WALK_KEY, None)
            if watermark is not None:
                state.update(watermark.next_bookmark().to_state())
            if walk_key in self.outcomes.started_whole:
                self.outcomes.walked_whole.add(walk_key)
        finally:
            self.fleet.close(feed)


def conversion_path(parsed: str, converter: PageConverter) -> str:
    """How a page was parsed and converted, for the report: the parse path
    (``arrow``, ``arrow+orjson``, ``orjson``), ``+child rows`` when only its
    child tables went row by row, or ``rows`` when the whole page did."""
    if not converter.stayed_columnar:
        return "rows"
    return f"{parsed}+child rows" if converter.children_by_row else parsed


def served_versions(records: Any, entity: Entity) -> pa.Table:
    """(id, updated_at) of a page as the API sent it, in canonical names (reconcile's evidence)."""
    if isinstance(records, pa.Table):
        names = records.column_names
        if entity.primary_key in names and entity.updated_at in names:
            return pa.table({ID_COLUMN: records[entity.primary_key].cast(pa.string()),
                             UPDATED_AT_COLUMN: records[entity.updated_at]})
        records = records.to_pylist()
    rows = [r for r in records if isinstance(r, dict)]
    return pa.table({ID_COLUMN: pa.array([str(r.get(entity.primary_key)) for r in rows], pa.string()),
                     UPDATED_AT_COLUMN: pa.array([_text(r.get(entity.updated_at)) for r in rows], pa.string())})


def _text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def committed_positions(resources_state: dict) -> dict[tuple[str, str], Optional[dict]]:
    """(connection, table) -> the base the next stretch of each walk starts from
    (None for walks that are finished), read from committed dlt state."""
    positions: dict[tuple[str, str], Optional[dict]] = {}
    for table, resource in (resources_state or {}).items():
        for connection_id, state in (resource.get("bookmarks") or {}).items():
            if not state:
                continue  # a walk that never committed anything
            position = WalkPosition.from_state(state)
            positions[(connection_id, table)] = position.base(state.get("modified_after")) if position else None
    return positions


class Batches:
    """Gathers pages into tables of about ``rows`` rows before handing them to dlt.

    dlt's work per item (schema inference, hints, a file write) is fixed, so
    one item per page of 100-500 records is mostly overhead; a few thousand
    rows per item are not. Batches are flushed at the end of every walk and
    before its state is saved, so state never runs ahead of yielded rows.
    5,000 rather than 20,000: while the previous package loads beside the
    extraction, smaller batches keep peak RSS lower at no measurable cost
    (benchmarks/sync_benchmark.py).
    """

    def __init__(self, hints: dict[str, Any], rows: int = 5_000) -> None:
        self.hints = hints
        self.rows = rows
        self._pending: dict[str, list[pa.Table]] = {}
        self._counts: dict[str, int] = {}

    def add(self, name: str, table: pa.Table) -> Iterator[Any]:
        if not table.num_rows:
            return
        pending = self._pending.get(name)
        if pending and not _concatenable(pending[0].schema, table.schema):
            yield self._take(name)  # documents keep values as sent: a field changed its type
        self._pending.setdefault(name, []).append(table)
        self._counts[name] = self._counts.get(name, 0) + table.num_rows
        if self._counts[name] >= self.rows:
            yield self._take(name)

    def flush(self) -> Iterator[Any]:
        for name in list(self._pending):
            yield self._take(name)

    def _take(self, name: str) -> Any:
        tables = self._pending.pop(name)
        self._counts.pop(name, None)
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
        return dlt.mark.with_hints(table, self.hints[name], create_table_variant=True)


def _concatenable(first: pa.Schema, other: pa.Schema) -> bool:
    if first == other:
        return True
    try:
        pa.unify_schemas([first, other], promote_options="permissive")
    except ARROW_CAST_ERRORS:
        return False
    return True


def server_time(value: Optional[str]) -> Optional[datetime]:
    """The API server's clock (a ``Date`` header), to cap the bookmark with."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).astimezone(timezone.utc)
    except (TypeError, ValueError):
        return None
