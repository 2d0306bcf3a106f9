"""A dlt source for the Makini unified API: one resource per entity.

Each resource walks every connection with ``next_cursor`` at the entity's
maximum page size, from that connection's bookmark (see ``bookmark.py``), and
yields Arrow tables: the entity's rows and its child tables' rows. Rows carry
``connection_id``; the primary key is (``connection_id``, ``id``). A failing
connection is reported in the ``SyncReport`` and the others go on.
"""

from __future__ import annotations

import email.utils
import logging
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Optional, Sequence

import dlt
from dlt.sources import DltResource

from .bookmark import Bookmark, Watermark
from .client import RetryPolicy, located, raise_for_makini_error
from .connections import Connection, open_connections
from .errors import MakiniError
from .paginator import MakiniCursorPaginator
from .records import PageConverter
from .report import SyncReport
from .settings import CONNECTION_COLUMN, ID_COLUMN, UPDATED_AT_COLUMN, Entity, resolve_entities

logger = logging.getLogger(__name__)

MERGE = {"disposition": "merge", "strategy": "delete-insert"}

# drops rows not newer than the destination's: (entity, tables by name) -> tables
Fence = Callable[[Entity, dict], dict]


@dlt.source(name="makini", max_table_nesting=0)
def makini_source(
    base_url: str = dlt.config.value,
    api_token: Any = dlt.secrets.value,
    entities: Optional[Sequence[str]] = None,
    report: Optional[SyncReport] = None,
    retry_policy: Optional[RetryPolicy] = None,
    fence: Optional[Fence] = None,
) -> list[DltResource]:
    """Makini entities for the connections whose tokens ``api_token`` holds.

    ``api_token`` is one token or a list of tokens (one per connection).
    ``fence`` (see ``makini_sync.fence``) drops rows the destination already
    holds at the same or a newer version, before they are written.
    """
    report = report if report is not None else SyncReport()
    connections = open_connections(base_url, api_token, retry_policy or RetryPolicy())
    return [entity_resource(e, connections, report, fence) for e in resolve_entities(entities)]


def entity_resource(
    entity: Entity, connections: list[Connection], report: SyncReport, fence: Optional[Fence] = None
) -> DltResource:
    def read_entity() -> Iterator[Any]:
        state = dlt.current.resource_state()
        bookmarks = state.setdefault("bookmarks", {})
        for connection in connections:
            try:
                connection_id = connection.identify()
                yield from walk(connection_id, connection, entity, bookmarks, report, fence)
            except MakiniError as exc:
                report.fail(located(exc, connection.name, entity.table))
            except Exception as exc:  # noqa: BLE001 - transport errors after retries
                report.fail(located(exc, connection.name, entity.table))

    return dlt.resource(
        read_entity,
        name=entity.table,
        primary_key=[CONNECTION_COLUMN, ID_COLUMN],
        write_disposition=MERGE,
    )()


def entity_hints(entity: Entity) -> dict[str, Any]:
    """dlt table hints for the entity's table and each of its child tables.

    Every table gets its hints with its rows (rather than some on the
    resource) so that the parent's column hints do not leak into its children.
    """
    parent = dlt.mark.make_hints(
        table_name=entity.table,
        primary_key=[CONNECTION_COLUMN, ID_COLUMN],
        write_disposition=MERGE,
        columns={UPDATED_AT_COLUMN: {"dedup_sort": "desc"}},
    )
    return {
        entity.table: parent,
        **{
            child.table: dlt.mark.make_hints(
            table_name=child.table,
            primary_key=[CONNECTION_COLUMN, child.parent_column, child.key],
            write_disposition=MERGE,
                columns={child.version_column: {"dedup_sort": "desc"}},
            )
            for child in entity.children
        },
    }


def walk(
    connection_id: str,
    connection: Connection,
    entity: Entity,
    bookmarks: dict,
    report: SyncReport,
    fence: Optional[Fence] = None,
) -> Iterator[Any]:
    """Every record of ``entity`` changed since the bookmark, newest version kept."""
    bookmark = Bookmark.from_state(bookmarks.get(connection_id))
    params: dict[str, Any] = {"limit": entity.max_page_size}
    if bookmark.modified_after:
        params["modified_after"] = bookmark.modified_after
    paginator = MakiniCursorPaginator()
    converter = PageConverter(entity, connection_id)
    hints = entity_hints(entity)
    watermark: Optional[Watermark] = None
    progress = f"{entity.table} {connection_id}"
    collector = _collector()
    for page in connection.client.paginate(
        entity.path,
        params=params,
        paginator=paginator,
        hooks={"response": [raise_for_makini_error]},
    ):
        if watermark is None:
            watermark = Watermark(bookmark, server_time(page.response))
        fresh = [
            r
            for r in page
            if not (
                isinstance(r, dict)
                and bookmark.already_loaded(str(r.get(entity.primary_key)), r.get(entity.updated_at))
            )
        ]
        tables = converter.convert(fresh, page.response.headers.get("X-Request-Id"))
        watermark.observe(tables[entity.table])
        report.page(connection_id, entity.table, tables[entity.table].num_rows)
        if fence is not None:
            tables = fence(entity, tables)
        parent = tables.pop(entity.table)
        collector.update(progress, inc=len(page), total=paginator.total_count)
        if parent.num_rows:
            yield dlt.mark.with_hints(parent, hints[entity.table], create_table_variant=True)
        for table_name, table in tables.items():
            yield dlt.mark.with_hints(table, hints[table_name], create_table_variant=True)
    if watermark is not None:
        bookmarks[connection_id] = watermark.next_bookmark().to_state()


def server_time(response: Any) -> Optional[datetime]:
    """The API server's clock (the ``Date`` header), to cap the bookmark with."""
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).astimezone(timezone.utc)
    except (TypeError, ValueError):
        return None


def _collector() -> Any:
    """The running pipeline's progress collector (a no-op one outside a pipeline)."""
    try:
        return dlt.current.pipeline().collector
    except Exception:  # noqa: BLE001 - no active pipeline (e.g. iterating the source directly)
        from dlt.common.runtime.collector import NULL_COLLECTOR

        return NULL_COLLECTOR
