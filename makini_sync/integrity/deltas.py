"""Merging change deltas (webhook events, replays) through the sync's fenced path.

A delta is one record version (an upsert) or one hard delete. A batch keeps
the newest delta per key, is converted exactly as the sync converts pages,
passes the version fence, and is loaded into the same tables; a hard delete
becomes a tombstone, and the post-load sweep removes the row and its child
rows. So the rule "a stale delta never overwrites a newer row" holds the same
way for polling and for webhooks.
"""

from __future__ import annotations

import contextlib

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Union

import dlt
import pyarrow as pa

from sources.makini.bookmark import parse_iso
from sources.makini.column_kinds import ColumnKinds
from sources.makini.records import PageConverter
from sources.makini.settings import CONNECTION_COLUMN, ID_COLUMN, UPDATED_AT_COLUMN, Entity
from sources.makini.settings import key_columns
from sources.makini.table_hints import MERGE, entity_hints, schema_change_rows

from makini_sync.run.destination_session import after_load, destination_session, normalized_row_counts
from makini_sync.integrity.fence import TOMBSTONES, fenced_table_names
from makini_sync.integrity.locking import WriterLocks, holder_name
from makini_sync.destinations.profiles import DATASET_NAME, Profile, make_pipeline
from makini_sync.workers.naming import writer_pipeline_name
from makini_sync.run.recovery import drop_committed_extractions

logger = logging.getLogger(__name__)

DELTAS_PIPELINE = "makini_deltas"
TOMBSTONE_HINTS = dlt.mark.make_hints(
    table_name=TOMBSTONES,
    primary_key=[CONNECTION_COLUMN, "entity", ID_COLUMN],
    write_disposition=MERGE,
    columns={**key_columns(CONNECTION_COLUMN, "entity", ID_COLUMN), UPDATED_AT_COLUMN: {"dedup_sort": "desc"}},
)


@dataclass(frozen=True)
class Upsert:
    connection_id: str
    entity: Entity
    record: dict  # as the list endpoint returns it

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.connection_id, self.entity.table, str(self.record.get(self.entity.primary_key)))

    @property
    def version(self) -> Any:
        return parse_iso(str(self.record.get(self.entity.updated_at)))


@dataclass(frozen=True)
class Delete:
    connection_id: str
    entity: Entity
    record_id: str
    deleted_at: str  # ISO 8601: the time of deletion

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.connection_id, self.entity.table, str(self.record_id))

    @property
    def version(self) -> Any:
        return parse_iso(self.deleted_at)


Delta = Union[Upsert, Delete]


@dataclass
class DeltaStats:
    received: int = 0
    superseded_in_batch: int = 0
    loaded_rows: dict[str, int] = field(default_factory=dict)


def newest_per_key(deltas: Iterable[Delta]) -> list[Delta]:
    """One delta per key: the newest; at equal ``updated_at`` a delete wins."""
    newest: dict[tuple, Delta] = {}
    for delta in deltas:
        current = newest.get(delta.key)
        if current is None or delta.version > current.version or (
            delta.version == current.version and isinstance(delta, Delete)
        ):
            newest[delta.key] = delta
    return list(newest.values())


def delta_tables(deltas: list[Delta], documents: bool,
                 kinds: Optional[ColumnKinds] = None) -> Iterator[tuple[Entity, dict[str, pa.Table]]]:
    """Arrow tables per entity, converted exactly as the sync converts pages
    (``kinds``: the column types the tables hold)."""
    upserts: dict[tuple[str, str], list[Upsert]] = defaultdict(list)
    for delta in deltas:
        if isinstance(delta, Upsert):
            upserts[(delta.connection_id, delta.entity.table)].append(delta)
    for (connection_id, _), group in upserts.items():
        entity = group[0].entity
        converter = PageConverter(entity, connection_id, documents=documents, kinds=kinds)
        yield entity, converter.convert([dict(d.record) for d in group])


def touched_keys(deltas: list[Delta]) -> dict[str, dict[str, list[str]]]:
    """entity table -> connection -> ids this batch wrote or deleted (the
    post-load prune and sweep look at these records only)."""
    keys: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for delta in deltas:
        connection_id, table, record_id = delta.key
        keys[table][connection_id].append(record_id)
    return {table: dict(by_connection) for table, by_connection in keys.items()}


def tombstone_table(deletes: list[Delete]) -> pa.Table:
    return pa.table({
        CONNECTION_COLUMN: pa.array([d.connection_id for d in deletes], pa.string()),
        "entity": pa.array([d.entity.table for d in deletes], pa.string()),
        ID_COLUMN: pa.array([d.record_id for d in deletes], pa.string()),
        UPDATED_AT_COLUMN: pa.array([d.version for d in deletes], pa.timestamp("us", tz="UTC")),
    })


@dlt.source(name="makini_deltas", max_table_nesting=0)
def deltas_source(changes: Any) -> Any:
    """Its own schema: the deltas pipeline shares the sync's tables, not its schema."""
    return changes


CONNECTION_EVENTS = "connection_events"


def load_deltas(
    profile: Profile,
    deltas: Iterable[Delta],
    pipeline_name: str = DELTAS_PIPELINE,
    events: Optional[list[dict]] = None,
    pipeline: Optional[dlt.Pipeline] = None,
    locks: Optional[WriterLocks] = None,
) -> DeltaStats:
    """Merge ``deltas`` into ``profile``'s destination, version-fenced.

    ``events`` (lifecycle notices from webhooks) are appended to the
    ``connection_events`` table, for operators to query. A long-lived caller
    (the processor) passes its ``pipeline`` and ``locks`` so they are not built
    per batch. The batch's connections' locks and the load lock are held from
    reading stored versions to the end of the tidy (``integrity/locking.py``).
    """
    received = list(deltas)
    batch = newest_per_key(received)
    stats = DeltaStats(received=len(received), superseded_in_batch=len(received) - len(batch))
    if not batch and not events:
        return stats
    entities = list({d.entity.table: d.entity for d in batch}.values())
    deletes = [d for d in batch if isinstance(d, Delete)]
    pipeline = pipeline or make_pipeline(profile, writer_pipeline_name(pipeline_name, profile.name, DATASET_NAME))
    with contextlib.ExitStack() as held:
        if locks is None:
            locks = held.enter_context(WriterLocks(profile, pipeline.dataset_name, holder_name(pipeline.pipeline_name),
                                                   pipeline))
        held.enter_context(locks.connections({d.connection_id for d in batch}))
        held.enter_context(locks.loading())
        drop_committed_extractions(pipeline)  # a processor killed mid-normalize
        with destination_session(pipeline, profile, fenced_table_names(entities), first=True) as session:
            fenced = session.existing
            fence = session.fence(fenced)
            tables = fenced_table_names(entities)
            schema: dict[str, Any] = pipeline.default_schema.tables if pipeline.default_schema_name else {}
            kinds = ColumnKinds.from_schema(schema, tables, session.column_kinds(tables), profile.text_without_nul)

            @dlt.resource(name="deltas")
            def changes() -> Iterator[Any]:
                for entity, tables in delta_tables(batch, profile.documents, kinds):
                    if fence is not None:
                        tables = fence(entity, tables)
                    hints = entity_hints(entity)
                    for name, table in tables.items():
                        if table.num_rows:
                            yield dlt.mark.with_hints(table, hints[name], create_table_variant=True)
                changed = kinds.take_changes()
                if changed:
                    yield schema_change_rows(changed)  # recorded as the sync records them
                if deletes:
                    yield dlt.mark.with_hints(tombstone_table(deletes), TOMBSTONE_HINTS, create_table_variant=True)
                if events:
                    yield dlt.mark.with_hints(
                        events,
                        dlt.mark.make_hints(
                            table_name=CONNECTION_EVENTS,
                            write_disposition="merge",
                            primary_key="webhook_id",
                            columns={"webhook_id": {"data_type": "text", "precision": 255, "nullable": False}},
                        ),
                        create_table_variant=True,
                    )

            pipeline.extract(deltas_source(changes), loader_file_format=profile.loader_file_format)
        pipeline.normalize()
        loaded_rows = normalized_row_counts(pipeline)
        profile.load(pipeline)
        if not profile.documents:
            after_load(pipeline, entities, known=fenced, keys=touched_keys(batch))
    stats.loaded_rows = loaded_rows
    return stats
