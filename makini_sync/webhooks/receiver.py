"""The webhook receiver: verify, store durably, answer 200; nothing else on the request path.

``POST /webhooks/makini``:
  413 body over 1 MiB · 401 bad/missing signature or timestamp over 5 min off
  · 400 body that is not a JSON object with a ``type`` · 503 the inbox could
  not store it (retry) · 200 stored (or a duplicate ``webhook-id`` already
  stored). Rejected requests store nothing.
The store is the SQLite inbox or JetStream. SQLite: the event loop reads
bodies and answers; the inbox writer process verifies and stores
(``inbox_writer.py``), and the 200 is sent only after the event is committed
(group commit: concurrent requests share one fsync). JetStream: the 200 waits
for the broker's publish acknowledgement (``jetstream_receiver.py``).
``GET /healthz`` (503 while the store cannot store), ``GET /metrics``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping, Optional, Protocol, Sequence, Union

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from makini_sync.webhooks.inbox import Inbox
from makini_sync.webhooks.metrics import render_metrics
from makini_sync.webhooks.signatures import Rejected, parse_secrets
from makini_sync.webhooks.writer_client import InboxWriterClient, Reply

if TYPE_CHECKING:
    from makini_sync.webhooks.jetstream_inbox import JetStreamInbox

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


class EventStore(Protocol):
    """Where verified events go: ``SqliteStore`` or ``jetstream_receiver.JetStreamStore``."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def submit(self, webhook_id: bytes, stamp: bytes, signature: bytes, body: bytes) -> Reply: ...
    async def problem(self) -> Optional[str]: ...
    async def counts(self) -> dict: ...


class SqliteStore:
    """The embedded inbox: its writer process verifies and stores, the file answers the gauges."""

    def __init__(self, secrets: Sequence[str], inbox: Inbox) -> None:
        self.inbox, self.writer = inbox, InboxWriterClient(secrets, inbox.path)
        # bound once: every request calls it, and a wrapper would add a frame to each
        self.submit, self.start, self.close = self.writer.submit, self.writer.start, self.writer.close

    async def problem(self) -> Optional[str]:
        return None if self.writer.running else "the inbox writer is restarting"

    async def counts(self) -> dict:
        return self.inbox.counts()


def event_store(secrets: Sequence[str], inbox: Union[Inbox, "JetStreamInbox"]) -> EventStore:
    if isinstance(inbox, Inbox):
        return SqliteStore(secrets, inbox)
    from makini_sync.webhooks.jetstream_receiver import JetStreamStore

    return JetStreamStore(secrets, inbox, MAX_BODY)


def create_app(secrets: Sequence[str], inbox: Union[Inbox, "JetStreamInbox"],
               on_stored: Optional[Any] = None) -> Starlette:
    """The receiver app. ``on_stored`` (optional) is called after each new event is stored.

    ``secrets`` are the ``whsec_...`` webhook secrets (several while rotating);
    a malformed one is a ValueError here, before anything is served.
    """
    parse_secrets(secrets)
    counters: Counter = Counter()
    writer = event_store(secrets, inbox)

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
        problem = await writer.problem()
        if problem is not None:
            return JSONResponse({"status": problem}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(render_metrics(counters, await writer.counts()), media_type="text/plain; version=0.0.4")

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
