"""Entities and field names from dlt config: a deployment's own shape without editing the package.

The five built-in entities (``settings.ENTITIES``) are the defaults. dlt
config adds entities (a Makini custom object) or changes a built-in one, for
every connection or for one connection (a v3 deployment's ``key`` and
``updatedAt`` beside v1's names)::

    [sources.makini.entities.maintenance_plans]     # a new entity
    path = "/api/v1/maintenance-plans"
    max_page_size = 200                              # default 500 (the API clamps a larger limit)
    column_types = { next_due = "date" }             # optional hints for the first load
    children = [{ field = "tasks", table = "maintenance_plans__tasks", key = "task_number",
                  parent_column = "maintenance_plan_id" }]

    [sources.makini.connections.conn_v3.entities.purchase_orders]   # one connection's names
    primary_key = "key"
    updated_at = "updatedAt"
    deleted_at = "deletedAt"
    renames = { orderNo = "order_number" }
    children = [{ table = "purchase_orders__line_items", field = "lineItems" }]

The same as JSON in env: ``SOURCES__MAKINI__ENTITIES='{"maintenance_plans": {...}}'``,
``SOURCES__MAKINI__CONNECTIONS='{"conn_v3": {"entities": {...}}}'``. Bad
config raises ``ConfigurationError`` naming the key and what to write, before
any request is made.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Optional

import dlt
import orjson

from .errors import ConfigurationError
from .settings import ENTITIES, ChildTable, Entity

ENTITIES_KEY = "sources.makini.entities"
CONNECTIONS_KEY = "sources.makini.connections"
DEFAULT_PAGE_SIZE = 500
COLUMN_KINDS = ("text", "bigint", "double", "bool", "timestamp", "date")
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

FIELD_DEFAULTS = {"primary_key": "id", "updated_at": "updated_at", "deleted_at": "deleted_at"}  # the contract's
FIELD_KEYS = tuple(FIELD_DEFAULTS)
ENTITY_KEYS = ("path", "max_page_size", *FIELD_KEYS, "children", "column_types", "renames")
CHILD_KEYS = ("field", "table", "key", "parent_column")
# one connection may rename API fields, not warehouse tables or columns
CONNECTION_CHILD_KEYS = ("field", "table")


@dataclasses.dataclass(frozen=True)
class EntityRegistry:
    """Every entity by warehouse table, and each connection's own version of them."""

    entities: dict[str, Entity]  # every connection's, then those only some connections have
    by_connection: dict[str, dict[str, Entity]] = dataclasses.field(default_factory=dict)
    shared: frozenset = frozenset()  # tables every connection has (built-in or sources.makini.entities)

    def for_connection(self, connection_id: str, table: str) -> Optional[Entity]:
        """The entity as ``connection_id`` serves it; None when that connection has no such entity."""
        own = self.by_connection.get(connection_id, {})
        if table in own:
            return own[table]
        return self.entities.get(table) if table in self.shared else None

    def by_slug(self, slug: str, connection_id: Optional[str] = None) -> Optional[Entity]:
        """The entity a webhook names by its path's last segment (``purchase-orders``)."""
        for entity in self.entities.values():
            if entity.slug == slug:
                return self.for_connection(connection_id, entity.table) if connection_id else entity
        return None

    def resolve(self, names: Any) -> list[Entity]:
        """Entities named by table (``purchase_orders``) or path segment (``purchase-orders``)."""
        if not names:
            return list(self.entities.values())
        if isinstance(names, str):
            names = [n for n in names.split(",") if n.strip()]
        chosen = []
        for name in names:
            name = str(name).strip()
            entity = self.entities.get(name) or self.by_slug(name)
            if entity is None:
                raise ConfigurationError(f"unknown entity {name!r}: choose from {', '.join(self.entities)}")
            chosen.append(entity)
        return chosen


def load_registry(entities: Any = None, connections: Any = None,
                  file_fields: Optional[Mapping[str, Mapping]] = None) -> EntityRegistry:
    """The built-in entities with dlt config's (or the given) entities and connections over them.
    ``file_fields``: connection id -> table -> field names, from a connections file
    (``connections_file.py``), over dlt config's for the same connection."""
    if entities is None:
        entities = dlt.config.get(ENTITIES_KEY)
    if connections is None:
        connections = dlt.config.get(CONNECTIONS_KEY)
    if file_fields:
        connections = dict(_mapping(connections, CONNECTIONS_KEY))
        for connection_id, tables in file_fields.items():
            own = dict(_mapping(_mapping(connections.get(connection_id), CONNECTIONS_KEY).get("entities"),
                                CONNECTIONS_KEY))
            connections[connection_id] = {"entities": {**own, **tables}}
    merged = dict(ENTITIES)
    for table, body in _mapping(entities, ENTITIES_KEY).items():
        where = f"{ENTITIES_KEY}.{table}"
        _check_identifier(table, where, "an entity's name is its warehouse table")
        merged[table] = _entity(table, _mapping(body, where), merged.get(table), where, CHILD_KEYS)
    by_connection: dict[str, dict[str, Entity]] = {}
    for connection_id, body in _mapping(connections, CONNECTIONS_KEY).items():
        where = f"{CONNECTIONS_KEY}.{connection_id}"
        body = _mapping(body, where)
        _only(body, ("entities",), where)
        own = {}
        for table, entity_body in _mapping(body.get("entities"), f"{where}.entities").items():
            at = f"{where}.entities.{table}"
            base = merged.get(table)
            if base is None:
                _check_identifier(table, at, "an entity's name is its warehouse table")
                own[table] = _entity(table, _mapping(entity_body, at), None, at, CHILD_KEYS)
            else:
                own[table] = _entity(table, _mapping(entity_body, at), base, at, CONNECTION_CHILD_KEYS)
        by_connection[str(connection_id)] = own
    connection_only = {t: e for own in by_connection.values() for t, e in own.items() if t not in merged}
    return EntityRegistry({**merged, **connection_only}, by_connection, frozenset(merged))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ConfigurationError(f"{where} is not valid JSON; write a table (TOML) or a JSON object") from None
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a table of settings, not {type(value).__name__}")
    return value


def _only(body: Mapping, allowed: tuple, where: str) -> None:
    for key in body:
        if key not in allowed:
            raise ConfigurationError(f"{where}: unknown key {key!r}; the keys are {', '.join(allowed)}")


def _check_identifier(name: str, where: str, why: str) -> None:
    if not IDENTIFIER.match(str(name)):
        raise ConfigurationError(
            f"{where}: {name!r} is not a table name ({why}); use lower case letters, digits and _")


def _text(body: Mapping, key: str, where: str, default: Optional[str]) -> Optional[str]:
    value = body.get(key, default)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigurationError(f"{where}.{key} must be a field name (text), not {value!r}")
    return value


def _entity(table: str, body: Mapping, base: Optional[Entity], where: str, child_keys: tuple) -> Entity:
    _only(body, ENTITY_KEYS, where)
    path = _text(body, "path", where, base.path if base else None)
    if path is None:
        raise ConfigurationError(f'{where} needs a path, e.g. path = "/api/v1/{table.replace("_", "-")}"')
    if not path.startswith("/"):
        raise ConfigurationError(f'{where}.path must start with /, e.g. "/api/v1/{table.replace("_", "-")}"')
    size = body.get("max_page_size", base.max_page_size if base else DEFAULT_PAGE_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 10_000:
        raise ConfigurationError(f"{where}.max_page_size must be a whole number from 1 to 10000, not {size!r}")
    fields: dict[str, str] = {}
    for key in FIELD_KEYS:
        value = _text(body, key, where, getattr(base, key) if base else FIELD_DEFAULTS[key])
        if value is None:  # a JSON null: every entity needs its key, version and deletion fields
            raise ConfigurationError(f"{where}.{key} must be a field name (text), not null")
        fields[key] = value
    types = _mapping(body.get("column_types"), f"{where}.column_types")
    for column, kind in types.items():
        if kind not in COLUMN_KINDS:
            raise ConfigurationError(
                f"{where}.column_types.{column} is {kind!r}; write one of {', '.join(COLUMN_KINDS)}")
    renames = _mapping(body.get("renames"), f"{where}.renames")
    for api_field, column in renames.items():
        if not isinstance(column, str) or not column:
            raise ConfigurationError(f"{where}.renames.{api_field} must name a column (text), not {column!r}")
    return Entity(
        table=table,
        path=path,
        max_page_size=size,
        primary_key=fields["primary_key"],
        updated_at=fields["updated_at"],
        deleted_at=fields["deleted_at"],
        children=_children(body.get("children"), base, where, child_keys),
        column_types={**(base.column_types if base else {}), **types},
        renames={**(base.renames if base else {}), **renames},
    )


def _children(value: Any, base: Optional[Entity], where: str, allowed: tuple) -> tuple[ChildTable, ...]:
    """Children by table: an entry naming a child of ``base`` changes it, another adds one."""
    current = {c.table: c for c in (base.children if base else ())}
    if value is None:
        return tuple(current.values())
    if not isinstance(value, list):
        raise ConfigurationError(f"{where}.children must be a list of tables, e.g. "
                                 '[{ field = "tasks", table = "plans__tasks", key = "task_number", '
                                 'parent_column = "plan_id" }]')
    for index, raw in enumerate(value):
        at = f"{where}.children[{index}]"
        body = _mapping(raw, at)
        _only(body, allowed, at)
        table = body.get("table")
        if not isinstance(table, str):
            raise ConfigurationError(f"{at} needs table = the child's warehouse table")
        known = current.get(table)
        if known is None and allowed != CHILD_KEYS:
            raise ConfigurationError(
                f"{at}: {table!r} is not a child table of this entity; a connection can only rename "
                f"the field of one of: {', '.join(current) or 'none'}")
        if known is None:
            _check_identifier(table, f"{at}.table", "a child table's name")
            missing = [k for k in CHILD_KEYS if not isinstance(body.get(k), str) or not body.get(k)]
            if missing:
                raise ConfigurationError(f"{at} needs {', '.join(missing)} (text)")
            current[table] = ChildTable(**{k: body[k] for k in CHILD_KEYS})
        else:
            current[table] = dataclasses.replace(known, **{k: body[k] for k in body if k != "table"})
    return tuple(current.values())
