"""Helpers for tests against the machine's NATS JetStream server (.ci/run makes sure it is up).

Each test gets a stream of its own (``t_<random>``: its dead-letter stream,
ledger and consumer are named after it), deleted afterwards, so tests never
see each other's messages and the shared server is left as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from typing import Any, Awaitable, Callable, Iterator, Optional, TypeVar

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from makini_sync.webhooks.inbox_url import JetStreamAddress
from makini_sync.webhooks.jetstream_inbox import JetStreamInbox

NATS_URL = os.environ.get("MAKINI_TEST_NATS", "nats://127.0.0.1:4222")
T = TypeVar("T")


def with_js(work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run ``work`` with a JetStream context of a fresh connection (each test helper call opens its own)."""
    async def run() -> T:
        nc = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=1)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(run())


def require_nats() -> None:
    try:
        with_js(lambda js: js.account_info())
    except Exception as exc:  # noqa: BLE001 - reported as the test's reason
        message = f"NATS JetStream at {NATS_URL} is not reachable ({type(exc).__name__}: {exc})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must have it (.ci/run starts it)")
        pytest.skip(f"{message}; skipped outside CI")


@contextlib.contextmanager
def own_stream() -> Iterator[tuple[str, JetStreamInbox]]:
    """A new stream name: yields the ``--inbox`` value and the inbox; deletes all it made afterwards."""
    require_nats()
    stream = f"t_{uuid.uuid4().hex[:10]}"
    inbox = JetStreamInbox(JetStreamAddress(NATS_URL, stream))
    try:
        yield f"{NATS_URL}/{stream}", inbox
    finally:
        async def delete(js: JetStreamContext) -> None:
            for name in (inbox.stream, inbox.dead_stream, f"KV_{inbox.ledger_bucket}"):
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(name)

        with_js(delete)


def messages(inbox: JetStreamInbox, stream: Optional[str] = None) -> list[Any]:
    """Every message in the inbox stream (or ``stream``), oldest first, as nats-py's RawStreamMsg."""
    name = stream or inbox.stream

    async def read(js: JetStreamContext) -> list[Any]:
        found, seq = [], 1
        while True:
            try:
                raw = await js.get_msg(name, seq, next=True, subject=f"{name}.>")
            except NotFoundError:
                return found
            found.append(raw)
            seq = raw.seq + 1

    return with_js(read)


def publish(inbox: JetStreamInbox, events: list[tuple[str, bytes]]) -> None:
    """Store events as a receiver does (``JetStreamInbox.publish``)."""
    import orjson

    async def put(js: JetStreamContext) -> None:
        await inbox.ensure(js)
        for webhook_id, body in events:
            await inbox.publish(js, webhook_id, inbox.subject(orjson.loads(body)), body)

    with_js(put)


def consumer(inbox: JetStreamInbox) -> Any:
    return with_js(lambda js: js.consumer_info(inbox.stream, inbox.consumer))
