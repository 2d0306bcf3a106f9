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

from .cancellation import Cancelled
from .client import TRANSPORT_ERRORS, RetryPolicy, located
from .errors import RetriableError
from .completeness import lookback_setting
from .connections import Connection, identify_all, open_connections
from .report import SyncReport
from .entity_config import EntityRegistry, load_registry
from .fleet import WAITING, Fleet, interleaved
from .fleet_progress import FleetProgress
from .options import SourceOptions
from .walk_outcomes import WalkOutcomes
from .settings import CONNECTION_COLUMN, ID_COLUMN
from .table_hints import MERGE
from .walk import EntityWalk, LoadBudget

logger = logging.getLogger(__name__)

# what a walk's requests end with when the connection's breaker stops their retries
STOPPED_BY_THE_BREAKER = (RetriableError, Cancelled, *TRANSPORT_ERRORS)


@dlt.source(name="makini", section="makini", max_table_nesting=0)
def makini_source(
    base_url: str = dlt.config.value,
    api_token: Any = dlt.secrets.value,
    entities: Optional[Sequence[str]] = None,
    lookback_seconds: Optional[Any] = dlt.config.value,  # validated by lookback_setting, with a message saying what to write
    connections: Optional[Sequence[Connection]] = None,
    options: Optional[SourceOptions] = None,
) -> list[DltResource]:
    """Makini entities for the connections whose tokens ``api_token`` holds.

    ``api_token`` is one token or a list of tokens (one per connection).
    ``entities``: tables or path segments (default: every entity).
    ``lookback_seconds``: how far below the connection's completeness bound
    bookmarks stay (``completeness.py``; unset: 0 while ``/sync-status``
    answers, a day when it does not). ``connections``: connections the caller
    opened and identified already (instead of ``api_token``'s); each
    extraction reads their completeness bound afresh. ``options``: what the
    sync and reconcile tune per extraction (``options.py``).
    """
    o = options if options is not None else SourceOptions()
    registry = o.registry if o.registry is not None else load_registry()
    lookback = lookback_setting(lookback_seconds)
    report = o.report if o.report is not None else SyncReport()
    outcomes = o.outcomes if o.outcomes is not None else WalkOutcomes()
    if connections is not None:
        connections = [dataclasses.replace(c, bound=None) for c in connections]
    else:
        connections = open_connections(base_url, api_token, o.retry_policy or RetryPolicy())
    # a dry run yields nothing: one extraction
    budget = LoadBudget(None, None) if o.dry_run else LoadBudget(o.max_rows_per_load, o.max_seconds_per_load)
    chosen = registry.resolve(entities)
    fleet = Fleet(o.concurrency, FleetProgress(running_collector(), connections, len(connections) * len(chosen)))
    spool_root = None if o.dry_run or not o.spool_root else Path(o.spool_root)
    return [
        entity_resource(EntityWalk(e, report, budget, o.fence, o.documents, o.backfill, spool_root,
                                   o.text_without_nul, lookback, o.collect_versions, o.stored_versions, o.dry_run,
                                   fleet, outcomes, o.page_workers),
                        connections, registry, o.only, o.stored_kinds, o.dry_run)
        for e in chosen
    ]


def entity_resource(
    walker: EntityWalk, connections: list[Connection], registry: EntityRegistry, only: Optional[frozenset] = None,
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
        started: set[str] = set()
        for connection in connections:
            try:
                connection_id = connection.identify()
            except Exception as exc:  # noqa: BLE001 - every failure is reported, the others go on
                failed(connection, exc)
                yield None
                continue
            if only is not None and (connection_id, entity.table) not in only or not connection.serves(entity.table) \
                    or registry.for_connection(connection_id, entity.table) is None:
                yield None  # not this extraction's, or an entity only other connections have
                continue
            if connection_id in started:  # configured twice: one walk, one bookmark
                yield None
                continue
            started.add(connection_id)
            if connection.breaker.open:
                report.skip(connection.name, entity.table, connection.breaker)
                yield None
                continue
            served = registry.for_connection(connection_id, entity.table)
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
        cause = connection.breaker.cause
        if cause is not None and (isinstance(exc, STOPPED_BY_THE_BREAKER) or type(error) is type(cause)):
            # another walk of the connection tripped its breaker: this one stopped with it, or met
            # the same refusal at the same moment; any other failure is its own and is reported
            report.skip(connection.name, entity.table, connection.breaker)
            return
        connection.breaker.record(error)
        report.fail(error)

    return dlt.resource(
        read_entity,
        name=entity.table,
        section="makini",  # the source's section, not this module's name
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
