"""The public API (`/api/v1/...`): auth, rate limit, routing, list pages, errors.

Pure request -> response logic on `SandboxState`; the HTTP layer (server.py)
owns sockets and applies latency and the socket-level faults (drop, slow)
before calling `handle`. Check order: injected fault, auth (401), rate limit
(429), route (404, any method but GET too), connection status (401/503 on list
endpoints), parameters (400). `GET /api/v1/connection` always answers, so a
client can read its status.

Every answer to a known connection carries `X-RateLimit-Limit`,
`X-RateLimit-Remaining` and `X-RateLimit-Reset` (whole seconds until the
window ends: a sandbox extra, real servers may omit it, as they may omit the
other two); a 429 from the limiter adds `Retry-After` (the same seconds, at
least 1). Injected faults are answered before the limiter and use no budget.
"""
from __future__ import annotations

import logging
from typing import NamedTuple
from urllib.parse import parse_qs

import orjson

from .clock import parse_iso_ms
from .cursor import CursorError, CursorState
from .entities import ALL_ENTITY_SPECS, DEFAULT_LIMIT
from .faults import RateDecision
from .state import Connection, SandboxState

log = logging.getLogger(__name__)

PREFIX = "/api/v1/"
UNAUTHENTICATED = "_unauthenticated"
_REASONS = {"500": (500, "INTERNAL_ERROR", "injected fault: internal error"),
            "503": (503, "SYSTEM_UNAVAILABLE", "injected fault: upstream system unavailable")}


class Response(NamedTuple):
    status: int
    body: bytes
    headers: list[tuple[str, str]]


def error(status: int, code: str, message: str, request_id: str,
          headers: list[tuple[str, str]] | None = None) -> Response:
    body = orjson.dumps({"error": {"code": code, "message": message, "request_id": request_id}})
    return Response(status, body, headers or [])


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def route_key(path: str) -> str:
    """What the request counter files a request under: the entity or endpoint name."""
    rest = path[len(PREFIX):].strip("/") if path.startswith(PREFIX) else path
    return rest if rest in ALL_ENTITY_SPECS or rest in ("connection", "sync-status") else path


def connection_for(state: SandboxState, authorization: str | None) -> Connection | None:
    """The connection a request's `Authorization` header names, or None."""
    token = bearer_token(authorization)
    return state.by_token.get(token) if token else None


def handle(state: SandboxState, method: str, path: str, query: str, conn: Connection | None,
           request_id: str, fault: str | None = None) -> Response:
    """One API request of `conn` (None: no valid token). `fault` is the injected fault
    drawn for it ("429", "500", "503", or "cut": answered normally, counted as cut)."""
    resp, verdict = _handle(state, method, conn, path, query, request_id, fault)
    status = "cut" if fault == "cut" else str(resp.status)
    state.counter.record(conn.id if conn else UNAUTHENTICATED, route_key(path), status, verdict)
    return resp


def rate_limit_headers(decision: RateDecision, with_reset: bool = True) -> list[tuple[str, str]]:
    """`X-RateLimit-Reset` (whole seconds until the window ends) is a sandbox extra: the
    contract names only Limit and Remaining, and a real server may omit all three
    (`set_rate_limit(..., reset_header=False)` leaves it out)."""
    headers = [("X-RateLimit-Limit", str(decision.limit)), ("X-RateLimit-Remaining", str(decision.remaining))]
    return headers + [("X-RateLimit-Reset", str(decision.reset))] if with_reset else headers


def _handle(state: SandboxState, method: str, conn: Connection | None, path: str, query: str,
            request_id: str, fault: str | None) -> tuple[Response, str | None]:
    """The response and the rate limiter's verdict ("admitted", "refused", or None when
    the request was answered before the limiter)."""
    now = state.clock.now_ms()
    if fault in ("429", *_REASONS):
        # Injected faults use no budget; a known connection's answer still shows its budget.
        headers = rate_limit_headers(state.limiter.peek(conn.id, now), state.rate_reset_header) if conn else []
        if fault == "429":
            retry = state.faults.settings.retry_after
            return error(429, "RATE_LIMIT_EXCEEDED", f"rate limit exceeded (injected); retry after {retry} s",
                         request_id, headers + [("Retry-After", str(retry))]), None
        status, code, message = _REASONS[fault]
        return error(status, code, message, request_id, headers), None
    if conn is None:
        return error(401, "UNAUTHORIZED", "missing or invalid bearer token", request_id), None
    decision = state.limiter.check(conn.id, now)
    rl_headers = rate_limit_headers(decision, state.rate_reset_header)
    if not decision.allowed:
        return error(429, "RATE_LIMIT_EXCEEDED",
                     f"rate limit of {decision.limit} requests per {decision.window_seconds:g} s exceeded "
                     f"for connection {conn.id}; retry after {decision.retry_after} s",
                     request_id, rl_headers + [("Retry-After", str(decision.retry_after))]), "refused"
    return _route(state, method, conn, path, query, request_id, now, rl_headers), "admitted"


def _route(state: SandboxState, method: str, conn: Connection, path: str, query: str, request_id: str,
           now: int, rl_headers: list[tuple[str, str]]) -> Response:
    rest = path[len(PREFIX):].strip("/") if path.startswith(PREFIX) else None
    if method != "GET":
        return error(404, "NOT_FOUND", f"no route for {method} {path}", request_id, rl_headers)
    if rest == "connection":
        body = orjson.dumps({"id": conn.id, "system": conn.system, "status": conn.status})
        return Response(200, body, rl_headers)
    if rest == "sync-status":
        if conn.visibility.answer == "error":
            return error(500, "INTERNAL_ERROR", "sync status is unavailable (sandbox: answer=error)",
                         request_id, rl_headers)
        return Response(200, orjson.dumps(state.sync_status(conn.id)), rl_headers)
    if rest not in conn.stores:  # a custom entity is served only by connections whose shape has it
        return error(404, "NOT_FOUND", f"no such endpoint: {path}", request_id, rl_headers)
    if conn.status == "reauthorization_required":
        return error(401, "REAUTHORIZATION_REQUIRED",
                     f"connection {conn.id} ({conn.system}) needs to be reauthorized; reconnect it in Makini",
                     request_id, rl_headers)
    if conn.status == "offline":
        return error(503, "SYSTEM_UNAVAILABLE", f"connection {conn.id} ({conn.system}) is offline",
                     request_id, rl_headers)
    try:
        body = _list(state, conn, rest, query, now)
    except _BadRequest as exc:
        return error(400, exc.code, str(exc), request_id, rl_headers)
    return Response(200, body, rl_headers)


class _BadRequest(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _list(state: SandboxState, conn: Connection, entity: str, query: str, now: int) -> bytes:
    """One page. With a cursor, the cursor's modified_after and limit govern the
    walk (query values for them are ignored), so a client that resends its
    first-page parameters alongside the cursor gets a consistent walk."""
    params = parse_qs(query, keep_blank_values=True)
    spec = ALL_ENTITY_SPECS[entity]
    cursor = params.get("cursor", [None])[0]
    if cursor is not None:
        try:
            walk = state.cursors.decode(cursor, conn.id, entity, now)
        except CursorError as exc:
            raise _BadRequest("INVALID_CURSOR", str(exc)) from None
    else:
        walk = CursorState(None, _modified_after(params), _limit(params, spec.max_limit))
    page = conn.stores[entity].page(walk.after, walk.min_ms, walk.limit)
    if page.has_more:
        token = state.cursors.encode(conn.id, entity, CursorState(page.last_key, walk.min_ms, walk.limit), now)
        nxt = b'"' + token.encode() + b'"'
    else:
        nxt = b"null"
    parts = [b'{"data":[', b",".join(page.raws), b'],"next_cursor":', nxt]
    if conn.total_count:
        parts.append(b',"total_count":%d' % page.total)
    parts.append(b"}")
    return b"".join(parts)


def _limit(params: dict, max_limit: int) -> int:
    raw = params.get("limit", [None])[0]
    if raw is None:
        return min(DEFAULT_LIMIT, max_limit)
    try:
        value = int(raw.strip())
    except ValueError:
        raise _BadRequest("INVALID_PARAMETER", f"limit must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise _BadRequest("INVALID_PARAMETER", f"limit must be a positive integer, got {raw!r}")
    return min(value, max_limit)


def _modified_after(params: dict) -> int | None:
    raw = params.get("modified_after", [None])[0]
    if raw is None:
        return None
    try:
        # An unescaped "+" in "+00:00" arrives as a space after query decoding.
        return parse_iso_ms(raw.replace(" ", "+"))
    except ValueError:
        raise _BadRequest("INVALID_PARAMETER",
                          f"modified_after must be an ISO 8601 timestamp such as 2026-03-01T12:00:00.000Z, "
                          f"got {raw!r}") from None
