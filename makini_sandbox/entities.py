"""The five Makini list entities as data: path, page-size cap, id prefix.

One table, not a class per entity (house style): the server, the store and the
generators all look entities up here.
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

DEFAULT_LIMIT = 100


def resolve_sizes(sizes: dict[str, int] | None) -> dict[str, int]:
    """Fill missing entities with defaults; reject unknown names and negatives."""
    sizes = dict(sizes or {})
    unknown = set(sizes) - set(ENTITIES)
    if unknown:
        raise ValueError(f"unknown entities in sizes: {sorted(unknown)}; known: {list(ENTITIES)}")
    out = {}
    for path, spec in ENTITY_SPECS.items():
        n = int(sizes.get(path, spec.default_size))
        if n < 0:
            raise ValueError(f"size of {path} must be >= 0, got {n}")
        out[path] = n
    return out
