"""One connection's records of one entity, with a keyset index.

Records are kept only as pre-serialized JSON bytes (orjson, at generation and
on every mutation), so a page is a `b",".join` of slices: the server never
serializes records on the read path. The index is a sorted list of
(updated_at_ms, id) keys searched with `bisect`; a cursor is a key, not an
offset, so inserts and deletes between pages shift nothing.

Mutations are rare next to reads, so they parse the bytes back to a dict,
change it and re-serialize; this keeps memory to roughly the JSON size.

Shaped connections (shapes.py): the store is given the deployment's field
names and a renderer. `put` takes a canonical record (what data.py makes and
updates), serves `render(record)` and keeps the canonical bytes beside it, so
a mutation changes the canonical record and re-renders it (the shape stays).
`put_served` stores a record exactly as given (the control API's injected
records): there is no canonical form then, and JSON the fast path cannot
write (integers beyond 64 bits) goes through the stdlib encoder.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import threading
from typing import Callable, Iterable, NamedTuple

import orjson

from .clock import parse_iso_ms
from .shapes import CANONICAL_NAMES, FieldNames

Key = tuple[int, str]
_MASK64 = (1 << 64) - 1


class Rec(NamedTuple):
    key: Key               # (updated_at in ms, id): the sort key
    updated_at: str        # as serialized, for truth and checksums
    deleted_at: str | None
    line_count: int | None  # purchase orders only
    raw: bytes             # the record's JSON


class Page(NamedTuple):
    raws: list[bytes]
    last_key: Key | None
    has_more: bool
    total: int


def _rec(record: dict) -> Rec:
    updated = record["updated_at"]
    lines = record.get("line_items")
    return Rec((parse_iso_ms(updated), record["id"]), updated, record["deleted_at"],
               len(lines) if lines is not None else None, orjson.dumps(record))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads_exact(raw: bytes | str):
    """JSON -> Python without loss: integers of any size stay exact (orjson would make
    integers beyond 64 bits floats); NaN and Infinity are refused."""
    return json.loads(raw, parse_constant=_reject_constant)


def dumps_exact(value) -> bytes:
    """Python -> JSON: orjson, or the stdlib encoder for what orjson refuses (integers
    beyond 64 bits). ValueError for what is not JSON (NaN, lone surrogates, ...)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        pass
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, UnicodeEncodeError) as exc:
        raise ValueError(f"not a JSON value: {exc}") from None


def served_rec(record: dict, names: FieldNames) -> Rec:
    """A Rec for a record as served under `names`, validated (ValueError saying what is wrong)."""
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a JSON object, got {type(record).__name__}")
    rid = record.get(names.id)
    if not isinstance(rid, str) or not rid:
        raise ValueError(f"a record needs a non-empty string {names.id!r}, got {rid!r}")
    updated = record.get(names.updated_at)
    if not isinstance(updated, str):
        raise ValueError(f"record {rid!r}: {names.updated_at!r} must be an ISO 8601 string, got {updated!r}")
    try:
        ms = parse_iso_ms(updated)
    except ValueError:
        raise ValueError(f"record {rid!r}: {names.updated_at!r} is not ISO 8601: {updated!r}") from None
    deleted = record.get(names.deleted_at)
    if deleted is not None and not isinstance(deleted, str):
        raise ValueError(f"record {rid!r}: {names.deleted_at!r} must be null or a string, got {deleted!r}")
    lines = record.get(names.line_items)
    return Rec((ms, rid), updated, deleted, len(lines) if isinstance(lines, list) else None, dumps_exact(record))


def pair_hash(rid: str, updated_at: str) -> int:
    """64-bit hash of one (id, updated_at) pair; the checksum is their sum mod 2**64."""
    return int.from_bytes(hashlib.blake2b(f"{rid}\x00{updated_at}".encode(), digest_size=8).digest(), "big")


class EntityStore:
    """Records plus index. All methods take the store's lock; `lock` is public so
    a caller can make several calls atomic (the control API's batch mutations)."""

    def __init__(self, entity: str, records: Iterable[dict] = (), names: FieldNames = CANONICAL_NAMES,
                 render: Callable[[str, dict], dict] | None = None) -> None:
        self.entity = entity
        self.names = names
        self.lock = threading.RLock()
        self._render = render
        self._recs: dict[str, Rec] = {}
        self._base: dict[str, bytes] = {}   # canonical records by id (only with a renderer)
        self._exact: set[str] = set()       # ids put with put_served: no canonical form
        for record in records:
            rec = self._make(record)
            self._recs[rec.key[1]] = rec
        self._keys: list[Key] = sorted(rec.key for rec in self._recs.values())

    def _make(self, record: dict) -> Rec:
        """The Rec of a canonical record (rendered when the store has a renderer)."""
        if self._render is None:
            return _rec(record)
        rec = served_rec(self._render(self.entity, record), self.names)
        self._base[rec.key[1]] = orjson.dumps(record)
        return rec

    def __len__(self) -> int:
        return len(self._recs)

    @property
    def max_ms(self) -> int:
        with self.lock:
            return self._keys[-1][0] if self._keys else 0

    def page(self, after: Key | None, min_ms: int | None, limit: int) -> Page:
        """Up to `limit` records strictly after `after` with updated_at >= `min_ms`."""
        with self.lock:
            keys = self._keys
            lo = bisect.bisect_left(keys, (min_ms,)) if min_ms is not None else 0
            start = max(lo, bisect.bisect_right(keys, after)) if after is not None else lo
            chunk = keys[start:start + limit]
            recs = self._recs
            raws = [recs[k[1]].raw for k in chunk]
            return Page(raws, chunk[-1] if chunk else after, start + limit < len(keys), len(keys) - lo)

    def ids(self, live_only: bool = True) -> list[str]:
        with self.lock:
            return sorted(rid for rid, rec in self._recs.items() if not (live_only and rec.deleted_at))

    def __contains__(self, rid: str) -> bool:
        return rid in self._recs

    def get(self, rid: str) -> dict:
        """A fresh, mutable copy of the record as served (KeyError if absent)."""
        raw = self._recs[rid].raw
        return loads_exact(raw) if rid in self._exact else orjson.loads(raw)

    def canonical(self, rid: str) -> dict | None:
        """A fresh copy of the record's canonical form (what data.py updates), or None
        for a record put with `put_served` (KeyError if absent)."""
        if rid in self._exact:
            self._recs[rid]  # noqa: B018 - KeyError when absent
            return None
        if self._render is not None:
            return orjson.loads(self._base[rid])
        return orjson.loads(self._recs[rid].raw)

    def updated_ms(self, rid: str) -> int:
        """The record's updated_at in milliseconds (KeyError if absent)."""
        return self._recs[rid].key[0]

    def is_exact(self, rid: str) -> bool:
        return rid in self._exact

    def raws(self) -> list[bytes]:
        """Every record's JSON in list order (updated_at, id)."""
        with self.lock:
            return [self._recs[k[1]].raw for k in self._keys]

    def raw(self, rid: str) -> bytes:
        """The record's JSON exactly as the list endpoint serves it (KeyError if absent)."""
        return self._recs[rid].raw

    def put(self, record: dict) -> None:
        """Insert or replace a canonical record; its `updated_at` decides its place in the index."""
        with self.lock:
            rec = self._make(record)
            self._exact.discard(rec.key[1])
            self._insert(rec)

    def put_served(self, record: dict) -> bool:
        """Insert or replace a record exactly as the list endpoint will serve it (field
        names of this store); ValueError when it is not a valid record. True if new."""
        rec = served_rec(record, self.names)
        with self.lock:
            new = rec.key[1] not in self._recs
            self._base.pop(rec.key[1], None)
            self._exact.add(rec.key[1])
            self._insert(rec)
            return new

    def _insert(self, rec: Rec) -> None:
        old = self._recs.get(rec.key[1])
        if old is not None:
            self._unindex(old.key)
        self._recs[rec.key[1]] = rec
        bisect.insort(self._keys, rec.key)

    def remove(self, rid: str) -> None:
        """Hard delete: the record stops appearing in lists."""
        with self.lock:
            self._unindex(self._recs.pop(rid).key)
            self._base.pop(rid, None)
            self._exact.discard(rid)

    def clear(self) -> None:
        with self.lock:
            self._recs.clear()
            self._base.clear()
            self._exact.clear()
            self._keys.clear()

    def _unindex(self, key: Key) -> None:
        i = bisect.bisect_left(self._keys, key)
        assert self._keys[i] == key, f"index out of sync for {key}"
        del self._keys[i]

    def truth(self, detail: bool = False) -> dict:
        """Count and order-independent checksum over (id, updated_at), soft-deleted included."""
        with self.lock:
            recs = list(self._recs.values())
        total = 0
        for rec in recs:
            total = (total + pair_hash(rec.key[1], rec.updated_at)) & _MASK64
        out: dict = {"count": len(recs), "checksum": f"{total:016x}"}
        if detail:
            out["records"] = {
                rec.key[1]: ({"updated_at": rec.updated_at, "deleted_at": rec.deleted_at}
                             | ({"line_count": rec.line_count} if rec.line_count is not None else {}))
                for rec in recs
            }
        return out
