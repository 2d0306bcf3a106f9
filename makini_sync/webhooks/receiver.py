"""The webhook receiver: verify, store durably, answer 200; nothing else on the request path.

``POST /webhooks/makini``:
  413 body over 1 MiB · 401 bad/missing signature or timestamp over 5 min off
  · 400 body that is not a JSON object with a ``type`` · 200 stored (or a
  duplicate ``webhook-id`` already stored). Rejected requests store nothing.
The 200 is sent only after the event is committed to the inbox (group commit:
concurrent requests share one fsync). ``GET /healthz``, ``GET /metrics``.
``POST /webhooks/noop`` exists only with ``noop_route=True`` (benchmark-only:
reads the body, answers 200, verifies and stores nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any, AsyncIterator, Optional, Sequence

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .inbox import Inbox
from .metrics import render_metrics
from .signatures import Rejected, verify

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


class GroupCommitWriter:
    """Appends events to the inbox from the event loop, many per transaction.

    A request queues its event and awaits the commit, so the 200 means
    durable. The first event of a batch schedules one flush at the end of the
    loop's current pass; every request parsed in that pass joins it, so one
    INSERT and one fsync serve them all.

    Why on the loop thread and not a writer thread: measured here, a writer
    thread spent most of its time waiting for the GIL (each SQLite call gives
    it up and must win it back from a busy loop), so a batch took several
    switch intervals (5 ms each) and p99 latency grew to 60-70 ms. A batch's
    INSERT and fsync take well under a millisecond on a local disk; on a disk
    where fsync is slow, batches grow to match (throughput ~ batch / fsync).
    """

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self._pending: list[tuple[str, bytes, asyncio.Future]] = []

    async def append(self, webhook_id: str, body: bytes) -> bool:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((webhook_id, body, future))
        return await future

    def close(self) -> None:
        if self._pending:
            self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            stored = self.inbox.append((w, b) for w, b, _ in batch)
        except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
            logger.exception("inbox append failed")
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), new in zip(batch, stored):
            if not future.done():  # a request whose client went away was cancelled
                future.set_result(new)


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


def check_event(body: bytes) -> None:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Rejected(400, "malformed", "body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise Rejected(400, "malformed", "body is not a Makini event (an object with a type)")


def create_app(verifiers: Sequence[Any], inbox: Inbox, on_stored: Optional[Any] = None,
               noop_route: bool = False) -> Starlette:
    """The receiver app. ``on_stored`` (optional) is called after each new event is stored.

    ``noop_route`` adds ``POST /webhooks/noop`` for benchmarks only: the same
    server's baseline (read the body, answer 200), never enabled in production.
    """
    counters: Counter = Counter()
    writer: Optional[GroupCommitWriter] = None

    async def receive(request: Request) -> Response:
        counters["received"] += 1
        try:
            body = await read_body(request)
            webhook_id = verify(verifiers, body, request.headers)
            check_event(body)
        except Rejected as rejected:
            counters[f"rejected:{rejected.reason}"] += 1
            logger.info("rejected webhook: %s (%s)", rejected, rejected.status)
            return JSONResponse({"error": rejected.reason, "message": str(rejected)}, status_code=rejected.status)
        new = await writer.append(webhook_id, body)
        counters["stored" if new else "duplicate"] += 1
        if new and on_stored is not None:
            on_stored()
        return JSONResponse({"status": "stored" if new else "duplicate"})

    async def noop(request: Request) -> Response:
        await request.body()
        return JSONResponse({"status": "noop"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(render_metrics(counters, inbox.counts()), media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal writer
        writer = GroupCommitWriter(inbox)
        checkpointer = inbox.checkpoint_in_background()
        try:
            yield
        finally:
            writer.close()
            checkpointer.stop()

    return Starlette(
        routes=[
            Route("/webhooks/makini", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            *([Route("/webhooks/noop", noop, methods=["POST"])] if noop_route else []),  # benchmark-only
        ],
        lifespan=lifespan,
    )
