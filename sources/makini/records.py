"""Turn one page of Makini records into Arrow tables for dlt.

Yielding Arrow tables lets dlt skip its per-row Python normaliser, which is
where a generic REST source spends most of its time. The conversion is
column-wise and keeps each column's type stable across pages of a run: a column
takes its type from the entity table, or from its first page, and later pages
are cast to it; a value that cannot be is rejected with the field named.
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson
import pyarrow as pa

from .errors import MalformedResponse
from .settings import (
    CONNECTION_COLUMN,
    DELETED_AT_COLUMN,
    ID_COLUMN,
    JSON_FIELDS,
    UPDATED_AT_COLUMN,
    ChildTable,
    Entity,
)

TIMESTAMP = pa.timestamp("ms", tz="UTC")
TIMESTAMP_COLUMNS = frozenset({"created_at", UPDATED_AT_COLUMN, DELETED_AT_COLUMN})
ARROW_TYPES = {"double": pa.float64(), "bigint": pa.int64(), "text": pa.string(), "bool": pa.bool_()}


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _flatten(prefix: str, value: dict, out: dict) -> None:
    """Nested objects become ``parent__child`` columns, as dlt's normaliser does."""
    for key, inner in value.items():
        name = f"{prefix}__{key}"
        if isinstance(inner, dict):
            _flatten(name, inner, out)
        elif isinstance(inner, list):
            out[name] = _json_text(inner)
        else:
            out[name] = inner


def _flat_row(record: dict, skip: frozenset[str]) -> dict:
    row: dict[str, Any] = {}
    for key, value in record.items():
        if key in skip:
            continue
        if key in JSON_FIELDS:
            row[key] = None if value is None else _json_text(value)
        elif isinstance(value, dict):
            _flatten(key, value, row)
        elif isinstance(value, list):
            row[key] = _json_text(value)
        else:
            row[key] = value
    return row


class PageConverter:
    """Converts pages of one entity of one connection; remembers column types."""

    def __init__(self, entity: Entity, connection_id: str) -> None:
        self.entity = entity
        self.connection_id = connection_id
        self._types: dict[str, dict[str, pa.DataType]] = {}
        self._renames = {
            entity.primary_key: ID_COLUMN,
            entity.updated_at: UPDATED_AT_COLUMN,
            entity.deleted_at: DELETED_AT_COLUMN,
        }
        self._skip = frozenset(c.field for c in entity.children)

    def convert(self, records: Iterable[Any], request_id: str | None = None) -> dict[str, pa.Table]:
        """Tables keyed by warehouse table name: the entity's, then its children's."""
        rows: list[dict] = []
        children: dict[str, list[dict]] = {c.table: [] for c in self.entity.children}
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise self._malformed(f"record {index} is not an object", request_id)
            canonical = self._canonical(record, index, request_id)
            rows.append(canonical)
            for child in self.entity.children:
                children[child.table].extend(self._child_rows(child, record, canonical, request_id))
        tables = {self.entity.table: self._table(self.entity.table, rows, request_id)}
        for name, child_rows in children.items():
            if child_rows:
                tables[name] = self._table(name, child_rows, request_id)
        return tables

    def _canonical(self, record: dict, index: int, request_id: str | None) -> dict:
        renamed = {self._renames.get(k, k): v for k, v in record.items()}
        key, updated = renamed.get(ID_COLUMN), renamed.get(UPDATED_AT_COLUMN)
        if not isinstance(key, (str, int)) or isinstance(key, bool) or key == "":
            raise self._malformed(
                f"record {index} has no usable {self.entity.primary_key!r}", request_id
            )
        if not isinstance(updated, str):
            raise self._malformed(
                f"record {key!r} has no {self.entity.updated_at!r} timestamp", request_id
            )
        row = {CONNECTION_COLUMN: self.connection_id}
        row.update(_flat_row(renamed, self._skip))
        row[ID_COLUMN] = str(key)
        return row

    def _child_rows(self, child: ChildTable, record: dict, parent: dict, request_id) -> list[dict]:
        items = record.get(child.field) or []
        if not isinstance(items, list):
            raise self._malformed(f"{child.field!r} of {parent[ID_COLUMN]!r} is not an array", request_id)
        out = []
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                raise self._malformed(f"{child.field}[{position}] of {parent[ID_COLUMN]!r} is not an object", request_id)
            row = {
                CONNECTION_COLUMN: self.connection_id,
                child.parent_column: parent[ID_COLUMN],
                child.version_column: parent[UPDATED_AT_COLUMN],
            }
            row.update(_flat_row(item, frozenset()))
            if row.get(child.key) is None:
                row[child.key] = position + 1
            out.append(row)
        return out

    def _table(self, name: str, rows: list[dict], request_id: str | None) -> pa.Table:
        columns: dict[str, None] = {}
        for row in rows:
            for column in row:
                columns.setdefault(column)
        known = self._types.setdefault(name, {})
        arrays, fields = [], []
        for column in columns:
            values = [row.get(column) for row in rows]
            array = self._array(column, values, known, request_id)
            arrays.append(array)
            fields.append(pa.field(column, array.type))
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def _array(self, column: str, values: list, known: dict, request_id) -> pa.Array:
        target = known.get(column)
        if target is None:
            if column in TIMESTAMP_COLUMNS or column.endswith("_updated_at"):
                target = TIMESTAMP
            elif column in self.entity.column_types:
                target = ARROW_TYPES[self.entity.column_types[column]]
        try:
            if target is None:
                array = pa.array(values)
                if pa.types.is_null(array.type):
                    return array  # type still unknown; decide on a later page
                known[column] = array.type
                return array
            array = pa.array(values, type=target) if target != TIMESTAMP else pa.array(values).cast(TIMESTAMP)
            known[column] = target
            return array
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError) as exc:
            if target is None or target == pa.string():
                # mixed or oversized values: keep them, losslessly, as text
                known[column] = pa.string()
                return pa.array([None if v is None else _as_text(v) for v in values], pa.string())
            raise self._malformed(
                f"field {column!r} holds a value that is not {target}: {str(exc)[:120]}", request_id
            ) from None

    def _malformed(self, detail: str, request_id: str | None) -> MalformedResponse:
        return MalformedResponse(
            detail, connection=self.connection_id, entity=self.entity.table, request_id=request_id
        )


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return _json_text(value)
