"""The five Makini list entities as data: path, page-size cap, id prefix.

One table, not a class per entity (house style): the server, the store and the
generators all look entities up here. `CUSTOM_ENTITY_SPECS` are customer-defined
list endpoints (same paging, same record rules) that only connections whose
deployment shape has them serve (makini_sandbox/shapes.py); they are not in
`ENTITIES`, which stays the five standard ones.
"""
from __future__ import annotations

from typing import NamedTuple


class EntitySpec(NamedTuple):
    path: str          # URL path segment under /api/v1/
    max_limit: int     # page-size cap; larger `limit` values are clamped to it
    id_prefix: str     # prefix of generated record ids
    default_size: int  # records per connection when the caller gives no size


ENTITY_SPECS: dict[str, EntitySpec] = {
    spec.path: spec
    for spec in (
        EntitySpec("purchase-orders", 500, "po", 200),
        EntitySpec("work-orders", 250, "wo", 100),
        EntitySpec("assets", 500, "ast", 80),
        EntitySpec("inventory-items", 500, "inv", 120),
        EntitySpec("vendors", 100, "vnd", 30),
    )
}

ENTITIES: tuple[str, ...] = tuple(ENTITY_SPECS)

CUSTOM_ENTITY_SPECS: dict[str, EntitySpec] = {
    spec.path: spec
    for spec in (
        EntitySpec("maintenance-plans", 500, "mp", 40),
    )
}

ALL_ENTITY_SPECS: dict[str, EntitySpec] = {**ENTITY_SPECS, **CUSTOM_ENTITY_SPECS}

DEFAULT_LIMIT = 100


def resolve_sizes(sizes: dict[str, int] | None) -> dict[str, int]:
    """Fill missing standard entities with defaults; reject unknown names and negatives.

    A custom entity's size is kept only when given (connections whose shape has
    the entity use its `default_size` otherwise), so the default result is unchanged."""
    sizes = dict(sizes or {})
    unknown = set(sizes) - set(ALL_ENTITY_SPECS)
    if unknown:
        raise ValueError(f"unknown entities in sizes: {sorted(unknown)}; known: {list(ALL_ENTITY_SPECS)}")
    out = {}
    for path, spec in ALL_ENTITY_SPECS.items():
        if path not in ENTITY_SPECS and path not in sizes:
            continue
        n = int(sizes.get(path, spec.default_size))
        if n < 0:
            raise ValueError(f"size of {path} must be >= 0, got {n}")
        out[path] = n
    return out


def entity_size(sizes: dict[str, int], entity: str) -> int:
    """The number of initial records of `entity` (a custom entity's default when not given)."""
    return sizes.get(entity, ALL_ENTITY_SPECS[entity].default_size)
