"""A dlt source for the Makini unified API: one resource per entity.

Each resource walks every connection with ``next_cursor`` at the entity's
maximum page size, from that connection's bookmark (``bookmark.py``), and
yields Arrow tables: the entity's rows and its child tables' rows
(``walk.py``). Rows carry ``connection_id``; the primary key is
(``connection_id``, ``id``). A failing connection is reported in the
``SyncReport`` and the others go on.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import dlt
from dlt.sources import DltResource

from .client import RetryPolicy, located
from .completeness import lookback_setting
from .connections import Connection, identify_all, open_connections
from .report import SyncReport
from .entity_config import EntityRegistry, load_registry
from .fleet import DEFAULT_CONCURRENCY, WAITING, Fleet, interleaved
from .fleet_progress import FleetProgress
from .settings import CONNECTION_COLUMN, ID_COLUMN
from .settings import MERGE
from .walk import EntityWalk, Fence, LoadBudget

logger = logging.getLogger(__name__)


@dlt.source(name="makini", max_table_nesting=0)
def makini_source(
    base_url: str = dlt.config.value,
    api_token: Any = dlt.secrets.value,
    entities: Optional[Sequence[str]] = None,
    report: Optional[SyncReport] = None,
    retry_policy: Optional[RetryPolicy] = None,
    fence: Optional[Fence] = None,
    max_rows_per_load: Optional[int] = None,
    documents: bool = False,
    only: Optional[set] = None,
    backfill: bool = False,
    spool_root: Optional[str] = None,
    registry: Optional[EntityRegistry] = None,
    stored_kinds: Optional[dict] = None,
    text_without_nul: bool = False,
    lookback_seconds: Optional[Any] = dlt.config.value,  # validated by lookback_setting, with a message saying what to write
    collect_versions: bool = False,
    dry_run: bool = False,
    stored_versions: Optional[dict] = None,
    connections: Optional[Sequence[Connection]] = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[DltResource]:
    """Makini entities for the connections whose tokens ``api_token`` holds.

    ``api_token`` is one token or a list of tokens (one per connection).
    ``fence`` (``makini_sync.integrity.fence``) drops rows the destination already holds
    at the same or a newer version. ``max_rows_per_load`` ends the extraction
    once that many rows are in it; unfinished walks are listed in
    ``report.unfinished`` and resume on the next extraction. ``documents``
    keeps child rows and nested objects inside each record (document stores).
    ``only`` limits the walks to these (connection id, table) pairs: the
    unfinished walks of an earlier extraction in the same run. ``backfill``
    walks every record again, whatever the bookmark says (``reconcile``).
    ``spool_root`` turns on page checkpoints there (``spool.py``).
    ``registry``: the entities and each connection's field names (default: the
    built-in entities with dlt config's over them, ``entity_config.py``).
    ``stored_kinds``: table -> column -> type at the destination, for columns
    the pipeline's schema lacks (``column_kinds.py``). ``text_without_nul``:
    the destination's text cannot hold U+0000 (PostgreSQL), so such text lands
    as UTF-8 bytes in a binary variant column. ``lookback_seconds``: how far
    below the connection's completeness bound bookmarks stay (``completeness.py``;
    unset: 0 while ``/sync-status`` answers, a day when it does not).
    ``collect_versions``: note in ``report`` every (id, updated_at) seen and
    which walks were whole (reconcile's evidence). ``dry_run``: walk and
    report, but yield nothing and leave the bookmarks as they were.
    ``stored_versions``: (connection, table) -> {id: updated_at} the
    destination holds; a backfill does not load those versions again.
    ``connections``: connections the caller opened and identified already
    (instead of ``api_token``'s); each extraction reads their completeness
    bound afresh. ``concurrency``: how many walks, across connections and
    entities, wait on the network at once (``fleet.py``).
    """
    registry = registry if registry is not None else load_registry()
    lookback = lookback_setting(lookback_seconds)
    report = report if report is not None else SyncReport()
    if connections is not None:
        connections = [dataclasses.replace(c, bound=None) for c in connections]
    else:
        connections = open_connections(base_url, api_token, retry_policy or RetryPolicy())
    budget = LoadBudget(None if dry_run else max_rows_per_load)  # nothing is yielded: one extraction
    chosen = registry.resolve(entities)
    fleet = Fleet(concurrency, FleetProgress(running_collector(), connections, len(connections) * len(chosen)))
    return [
        entity_resource(EntityWalk(e, report, budget, fence, documents, backfill,
                                   None if dry_run else Path(spool_root) if spool_root else None,
                                   text_without_nul, lookback, collect_versions, stored_versions, dry_run, fleet),
                        connections, registry, only, stored_kinds, dry_run)
        for e in chosen
    ]


def entity_resource(
    walker: EntityWalk, connections: list[Connection], registry: EntityRegistry, only: Optional[set] = None,
    stored_kinds: Optional[dict] = None, dry_run: bool = False,
) -> DltResource:
    entity, report = walker.entity, walker.report

    def read_entity() -> Iterator[Any]:
        bookmarks = dlt.current.resource_state().setdefault("bookmarks", {})
        walker.learn_kinds(dlt.current.source_schema().tables, stored_kinds)
        if any(c.id is None and c.error is None for c in connections):
            identify_all(connections, walker.fleet.concurrency)  # side by side; each walk reads the answer
        yield from interleaved(walks(bookmarks), walker.fleet)
        walker.fleet.progress.show()

    def walks(bookmarks: dict) -> Iterator[Optional[Callable[[], Iterator[Any]]]]:
        """One walk per connection that serves the entity, started when a slot is free."""
        for connection in connections:
            if connection.breaker.open:
                report.skip(connection.name, entity.table, connection.breaker)
                yield None
                continue
            try:
                connection_id = connection.identify()
            except Exception as exc:  # noqa: BLE001 - every failure is reported, the others go on
                failed(connection, exc)
                yield None
                continue
            if only is not None and (connection_id, entity.table) not in only or not connection.serves(entity.table):
                yield None
                continue
            served = registry.for_connection(connection_id, entity.table)
            if served is None:
                yield None  # an entity only other connections have
                continue
            # dry run: a copy of the bookmark, since nothing is loaded and it must not move
            state = dict(bookmarks.get(connection_id, {})) if dry_run else bookmarks.setdefault(connection_id, {})
            yield functools.partial(guarded, connection, connection_id, state, served)

    def guarded(connection: Connection, connection_id: str, state: dict, served: Any) -> Iterator[Any]:
        try:
            for item in walker.run(connection_id, connection, state, served):
                if item is WAITING or not dry_run:
                    yield item
        except Exception as exc:  # noqa: BLE001 - every failure is reported, the others go on
            failed(connection, exc)

    def failed(connection: Connection, exc: BaseException) -> None:
        error = located(exc, connection.name, entity.table)
        if connection.breaker.open and connection.breaker.cause is not error:
            # another walk of the connection tripped its breaker: this one stopped with it
            report.skip(connection.name, entity.table, connection.breaker)
            return
        connection.breaker.record(error)
        report.fail(error)

    return dlt.resource(
        read_entity,
        name=entity.table,
        primary_key=[CONNECTION_COLUMN, ID_COLUMN],
        write_disposition=MERGE,
    )()


def running_collector() -> Any:
    """The running pipeline's progress collector (a no-op one outside a pipeline)."""
    try:
        return dlt.current.pipeline().collector
    except Exception:  # noqa: BLE001 - no active pipeline (e.g. iterating the source directly)
        from dlt.common.runtime.collector import NULL_COLLECTOR

        return NULL_COLLECTOR
