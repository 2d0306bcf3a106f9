"""The webhook receiver: verify, store durably, answer 200; nothing else on the request path.

``POST /webhooks/makini``:
  413 body over 1 MiB · 401 bad/missing signature or timestamp over 5 min off
  · 400 body that is not a JSON object with a ``type`` · 503 the inbox could
  not store it (retry) · 200 stored (or a duplicate ``webhook-id`` already
  stored). Rejected requests store nothing.
The event loop reads bodies and answers; the inbox writer process verifies
and stores (``inbox_writer.py``). The 200 is sent only after the event is
committed to the inbox (group commit: concurrent requests share one fsync).
``GET /healthz``, ``GET /metrics``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Any, AsyncIterator, Mapping, Optional, Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from makini_sync.webhooks.inbox import Inbox
from makini_sync.webhooks.metrics import render_metrics
from makini_sync.webhooks.signatures import Rejected, parse_secrets
from makini_sync.webhooks.writer_client import InboxWriterClient

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
MAX_SIGNATURE_HEADER = 8192  # a signature header holds a few 44-byte signatures
SIGNATURE_HEADERS = frozenset((b"webhook-id", b"webhook-timestamp", b"webhook-signature"))


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, "too_large", f"body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, "too_large", f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def signature_headers(scope: Mapping[str, Any]) -> tuple[bytes, bytes, bytes]:
    """The raw ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (first of each; empty if absent)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:  # ASGI lowercases header names
        if name in SIGNATURE_HEADERS and name not in found:
            found[name] = value
    return found.get(b"webhook-id", b""), found.get(b"webhook-timestamp", b""), found.get(b"webhook-signature", b"")


def create_app(secrets: Sequence[str], inbox: Inbox, on_stored: Optional[Any] = None) -> Starlette:
    """The receiver app. ``on_stored`` (optional) is called after each new event is stored.

    ``secrets`` are the ``whsec_...`` webhook secrets (several while rotating);
    a malformed one is a ValueError here, before anything is served.
    """
    parse_secrets(secrets)
    counters: Counter = Counter()
    writer = InboxWriterClient(secrets, inbox.path)

    def rejection(status: int, reason: str, message: str) -> Response:
        counters[f"rejected:{reason}"] += 1
        logger.info("rejected webhook: %s (%s)", message, status)
        return JSONResponse({"error": reason, "message": message}, status_code=status)

    async def receive(request: Request) -> Response:
        counters["received"] += 1
        try:
            body = await read_body(request)
        except Rejected as rejected:
            return rejection(rejected.status, rejected.reason, str(rejected))
        headers = signature_headers(request.scope)
        if max(map(len, headers)) > MAX_SIGNATURE_HEADER:
            return rejection(401, "signature", f"a webhook-* header is over {MAX_SIGNATURE_HEADER} bytes")
        status, text = await writer.submit(*headers, body)
        if status != 200:
            reason, _, message = text.decode().partition("\n")
            return rejection(status, reason, message)
        new = text == b"stored"
        counters["stored" if new else "duplicate"] += 1
        if new and on_stored is not None:
            on_stored()
        return JSONResponse({"status": "stored" if new else "duplicate"})

    async def healthz(request: Request) -> Response:
        if not writer.running:
            return JSONResponse({"status": "the inbox writer is restarting"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(render_metrics(counters, inbox.counts()), media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await writer.start()
        try:
            yield
        finally:
            await writer.close()

    return Starlette(
        routes=[
            Route("/webhooks/makini", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
