"""Records as stored documents.

Nested objects and child rows become sub-documents (also when they arrive as
JSON strings) so they can be queried, and ``updated_at``/``deleted_at`` become
UTC datetimes at BSON's millisecond precision so that the version fence
compares them chronologically.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any, Mapping

from bson.decimal128 import Decimal128

from sources.makini.settings import (
    CONNECTION_COLUMN, DELETED_AT_COLUMN, ENTITIES, ID_COLUMN, JSON_FIELDS, UPDATED_AT_COLUMN,
)

from makini_sync.integrity.fence import as_utc

# Array fields that other destinations load as child tables; here their rows
# stay embedded, so a new version of the parent replaces them all.
CHILD_FIELDS = frozenset(child.field for entity in ENTITIES.values() for child in entity.children)
# Fields stored as sub-documents even when they arrive as JSON strings.
# Columns dlt typed ``json`` and ``*_address`` fields are treated the same way.
NESTED_FIELDS = JSON_FIELDS | CHILD_FIELDS | frozenset({"address", "addresses"})


def document_key(connection_id: str, record_id: str) -> dict[str, str]:
    """The compound ``_id`` of an entity document. Field order matters: BSON
    compares sub-documents field by field, in order."""
    return {CONNECTION_COLUMN: str(connection_id), ID_COLUMN: str(record_id)}


def to_utc_datetime(value: Any) -> dt.datetime | None:
    """A UTC datetime at BSON (millisecond) precision, from a datetime or ISO string."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        value = as_utc(value)
        return dt.datetime(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond // 1000 * 1000, tzinfo=dt.timezone.utc,
        )
    raise TypeError(f"not a timestamp: {type(value).__name__}")


def _bson_value(value: Any) -> Any:
    """Values BSON cannot encode as they are, made encodable."""
    if isinstance(value, dict):
        return {str(k): _bson_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_bson_value(v) for v in value]
    if isinstance(value, dt.datetime):
        return to_utc_datetime(value)
    if isinstance(value, (dt.date, dt.time)):  # a calendar date is not an instant
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return Decimal128(value)
    return value


def _embedded(name: str, value: Any, json_columns: frozenset[str]) -> Any:
    if isinstance(value, str) and (name in json_columns or name in NESTED_FIELDS
                                   or name.endswith("_address")):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _fields(record: Mapping[str, Any], json_columns: frozenset[str]) -> dict:
    return {k: _bson_value(_embedded(k, v, json_columns)) for k, v in record.items()}


def to_document(record: Mapping[str, Any], json_columns: frozenset[str] = frozenset()) -> dict:
    """The stored document for one record (without ``_id``)."""
    doc = _fields(record, json_columns)
    for child_field in CHILD_FIELDS:
        if isinstance(doc.get(child_field), list):
            doc[child_field] = [_fields(row, frozenset()) if isinstance(row, dict) else row
                                for row in doc[child_field]]
    # dlt leaves out a column that has only been null so far; keep the field
    # so that "live" (deleted_at null) queries look the same everywhere
    doc.setdefault(DELETED_AT_COLUMN, None)
    for field in (UPDATED_AT_COLUMN, DELETED_AT_COLUMN):
        if doc.get(field) is not None:
            doc[field] = to_utc_datetime(doc[field])
    return doc
