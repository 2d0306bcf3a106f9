"""Opaque, tamper-proof keyset cursors.

A cursor is `base64url(payload) "." base64url(HMAC-SHA256(key, payload)[:16])`.
The payload holds the keyset position (updated_at ms, id) of the last record
served, the walk's `modified_after` and `limit`, the connection and entity it
belongs to, and its issue time on the sandbox clock. Nothing is stored
server-side, so cursors survive any number of concurrent walks; the signature
makes forged or edited cursors fail with INVALID_CURSOR, as does one older
than 24 h or one presented to another connection or entity.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import NamedTuple

import orjson

from .clock import DAY_MS

CURSOR_TTL_MS = DAY_MS
_VERSION = 1


class CursorError(ValueError):
    """The cursor is unknown, forged, expired or belongs elsewhere."""


class CursorState(NamedTuple):
    after: tuple[int, str]      # last key served
    min_ms: int | None          # the walk's modified_after, in ms (inclusive)
    limit: int                  # the walk's (clamped) page size


def _b64e(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class CursorCodec:
    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"makini-sandbox-cursor:" + secret).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]

    def encode(self, connection_id: str, entity: str, state: CursorState, now_ms: int) -> str:
        payload = orjson.dumps([_VERSION, connection_id, entity, state.after[0], state.after[1],
                                state.min_ms, state.limit, now_ms])
        return f"{_b64e(payload)}.{_b64e(self._sign(payload))}"

    def decode(self, token: str, connection_id: str, entity: str, now_ms: int) -> CursorState:
        try:
            body, _, sig = token.partition(".")
            payload = _b64d(body)
            if not hmac.compare_digest(_b64d(sig), self._sign(payload)):
                raise CursorError("cursor signature does not match; use the next_cursor value exactly as returned")
            version, conn, ent, ms, rid, min_ms, limit, issued = orjson.loads(payload)
        except CursorError:
            raise
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
            raise CursorError("cursor is malformed; use the next_cursor value exactly as returned") from exc
        if version != _VERSION or conn != connection_id or ent != entity:
            raise CursorError("cursor was issued for another connection or entity")
        if now_ms - issued > CURSOR_TTL_MS:
            raise CursorError("cursor expired (cursors are valid for 24 h); restart the walk without a cursor")
        return CursorState((ms, rid), min_ms, limit)
