"""Makini webhook events turned into deltas (record events) or lifecycle notices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import orjson

from sources.makini.entity_config import load_registry

from makini_sync.integrity.deltas import Delete, Upsert

RECORD_EVENTS = ("record.created", "record.updated", "record.deleted")
LIFECYCLE_EVENTS = ("sync.completed", "sync.failed", "connection.status_changed", "connection.reauthorization_required")
ALERT_EVENTS = ("sync.failed", "connection.status_changed", "connection.reauthorization_required")


class BadEvent(Exception):
    """An event that can never be applied (it is dead-lettered at once)."""


@dataclass(frozen=True)
class Lifecycle:
    webhook_id: str
    type: str
    connection_id: Optional[str]
    created_at: Optional[str]
    status: Optional[str]
    error: Optional[str]

    def row(self) -> dict:
        return {
            "webhook_id": self.webhook_id, "type": self.type, "connection_id": self.connection_id,
            "created_at": self.created_at, "status": self.status, "error": self.error,
        }


def parse_event(webhook_id: str, body: bytes) -> Union[Upsert, Delete, Lifecycle, None]:
    """The delta or notice an event carries; None for event types this version ignores."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"not JSON: {exc}") from None
    kind, connection_id = event.get("type"), event.get("connection_id")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    if kind in LIFECYCLE_EVENTS:
        return Lifecycle(webhook_id, kind, connection_id, event.get("created_at"),
                         _text(data.get("status")), _text(data.get("error")))
    if kind not in RECORD_EVENTS:
        return None
    if not isinstance(connection_id, str) or not connection_id:
        raise BadEvent("event has no connection_id")
    entity = load_registry().by_slug(str(data.get("entity")), connection_id)
    record = data.get("record")
    if entity is None:
        raise BadEvent(f"unknown entity {data.get('entity')!r}")
    if not isinstance(record, dict) or record.get(entity.primary_key) in (None, ""):
        raise BadEvent(f"event has no record with {entity.primary_key!r}")
    if not isinstance(record.get(entity.updated_at), str):
        raise BadEvent(f"record has no {entity.updated_at!r}")
    if kind == "record.deleted":
        return Delete(connection_id, entity, str(record[entity.primary_key]), record[entity.updated_at])
    return Upsert(connection_id, entity, record)


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()
