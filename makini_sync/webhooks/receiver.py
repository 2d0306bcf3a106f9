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
import queue
import threading
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
GROUP_COMMIT_MAX = 512


class GroupCommitWriter:
    """Appends events to the inbox from one thread, many per transaction.

    A request awaits its own event's commit, so the 200 means durable; while
    one transaction commits, the next requests queue up and share the next.
    """

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
        self._thread.start()

    async def append(self, webhook_id: str, body: bytes) -> bool:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((webhook_id, body, loop, future))
        return await future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < GROUP_COMMIT_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            try:
                stored = self.inbox.append((w, b) for w, b, _, _ in batch)
                outcomes = [(True, s) for s in stored]
            except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
                logger.exception("inbox append failed")
                outcomes = [(False, exc)] * len(batch)
            for (_, _, loop, future), (ok, value) in zip(batch, outcomes):
                loop.call_soon_threadsafe(_settle, future, ok, value)


def _settle(future: asyncio.Future, ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


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
        try:
            yield
        finally:
            writer.close()

    return Starlette(
        routes=[
            Route("/webhooks/makini", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            *([Route("/webhooks/noop", noop, methods=["POST"])] if noop_route else []),  # benchmark-only
        ],
        lifespan=lifespan,
    )
