"""One connection's records of one entity, with a keyset index.

Records are kept only as pre-serialized JSON bytes (orjson, at generation and
on every mutation), so a page is a `b",".join` of slices: the server never
serializes records on the read path. The index is a sorted list of
(updated_at_ms, id) keys searched with `bisect`; a cursor is a key, not an
offset, so inserts and deletes between pages shift nothing.

Mutations are rare next to reads, so they parse the bytes back to a dict,
change it and re-serialize; this keeps memory to roughly the JSON size.
"""
from __future__ import annotations

import bisect
import hashlib
import threading
from typing import Iterable, NamedTuple

import orjson

from .clock import parse_iso_ms

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


def pair_hash(rid: str, updated_at: str) -> int:
    """64-bit hash of one (id, updated_at) pair; the checksum is their sum mod 2**64."""
    return int.from_bytes(hashlib.blake2b(f"{rid}\x00{updated_at}".encode(), digest_size=8).digest(), "big")


class EntityStore:
    """Records plus index. All methods take the store's lock; `lock` is public so
    a caller can make several calls atomic (the control API's batch mutations)."""

    def __init__(self, entity: str, records: Iterable[dict] = ()) -> None:
        self.entity = entity
        self.lock = threading.RLock()
        self._recs: dict[str, Rec] = {}
        for record in records:
            rec = _rec(record)
            self._recs[rec.key[1]] = rec
        self._keys: list[Key] = sorted(rec.key for rec in self._recs.values())

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
        """A fresh, mutable copy of the record (KeyError if absent)."""
        return orjson.loads(self._recs[rid].raw)

    def raw(self, rid: str) -> bytes:
        """The record's JSON exactly as the list endpoint serves it (KeyError if absent)."""
        return self._recs[rid].raw

    def put(self, record: dict) -> None:
        """Insert or replace; the record's `updated_at` decides its place in the index."""
        rec = _rec(record)
        with self.lock:
            old = self._recs.get(rec.key[1])
            if old is not None:
                self._unindex(old.key)
            self._recs[rec.key[1]] = rec
            bisect.insort(self._keys, rec.key)

    def remove(self, rid: str) -> None:
        """Hard delete: the record stops appearing in lists."""
        with self.lock:
            self._unindex(self._recs.pop(rid).key)

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
