"""Dead letters on JetStream: the ``STREAM_dead`` stream that ``dlq list|replay`` reads.

A processor dead-letters an event itself (``jetstream_processor.py``): it
publishes the message here, waits for the acknowledgement, and only then
terminates it on the inbox. The consumer's ``max_deliver`` is unlimited, so
the server never drops a message on its own after a MAX_DELIVERIES advisory:
there is no moment at which an event is in neither stream. A processor that
dies between the two steps sees the message again, and the dead letter's
``Nats-Msg-Id`` (webhook-id and inbox sequence) makes the second publish a
duplicate the stream drops.

A replay publishes the event back into the inbox (``Makini-Webhook-Id`` says
whose it is; its ``Nats-Msg-Id`` is new, else the inbox would drop it as a
duplicate of the original within its window), then deletes the dead letter.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Awaitable, Callable, Optional, TypeVar

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from makini_sync.webhooks.inbox import StoredEvent
from makini_sync.webhooks.jetstream_inbox import MSG_ID, WEBHOOK_ID, JetStreamInbox, webhook_id_of

ERROR = "Makini-Error"
ATTEMPTS = "Makini-Attempts"
RECEIVED_AT = "Makini-Received-At"  # when the inbox stored the event (Unix seconds)
MAX_ERROR = 1000
T = TypeVar("T")


def header_text(text: str, limit: int = MAX_ERROR) -> str:
    """A header value: one line (a CR or LF would end the header), at most ``limit`` characters."""
    return " ".join(text.split())[:limit]


async def dead_letter(js: JetStreamContext, inbox: JetStreamInbox, msg: Msg, webhook_id: str, error: str) -> None:
    """Publish ``msg`` to the dead-letter stream and wait for the acknowledgement (the caller then terms it)."""
    meta = msg.metadata
    headers = {
        MSG_ID: f"{webhook_id}@{meta.sequence.stream}",
        WEBHOOK_ID: webhook_id,
        ERROR: header_text(error),
        ATTEMPTS: str(meta.num_delivered),
        RECEIVED_AT: f"{meta.timestamp.timestamp():.6f}",
    }
    await js.publish(inbox.dead_subject(msg.subject), msg.data, timeout=5, stream=inbox.dead_stream, headers=headers)


async def dead_letters(js: JetStreamContext, inbox: JetStreamInbox, limit: Optional[int] = None,
                       webhook_ids: Optional[set[str]] = None) -> list[tuple[int, str, StoredEvent]]:
    """The dead letters, oldest first: (sequence, subject, event), all or those of ``webhook_ids``."""
    found: list[tuple[int, str, StoredEvent]] = []
    seq = 1
    while limit is None or len(found) < limit:
        try:  # the next message at or after seq (a replay leaves gaps)
            raw = await js.get_msg(inbox.dead_stream, seq, next=True, subject=f"{inbox.dead_stream}.>")
        except NotFoundError:
            break
        assert raw.seq is not None and raw.subject is not None
        seq = raw.seq + 1
        headers = raw.headers or {}
        webhook_id = webhook_id_of(headers) or f"<no id, dead letter {raw.seq}>"
        if webhook_ids is not None and webhook_id not in webhook_ids:
            continue
        received = _float(headers.get(RECEIVED_AT)) or (raw.time or datetime.now()).timestamp()
        found.append((raw.seq, raw.subject, StoredEvent(webhook_id, received, raw.data or b"",
                                                        int(_float(headers.get(ATTEMPTS)) or 0),
                                                        headers.get(ERROR))))
    return found


async def replay(js: JetStreamContext, inbox: JetStreamInbox, webhook_ids: Optional[list[str]] = None) -> int:
    """Move dead letters (all, or the named webhook-ids) back into the inbox; how many."""
    chosen = await dead_letters(js, inbox, webhook_ids=set(webhook_ids) if webhook_ids else None)
    for seq, subject, event in chosen:
        await js.publish(inbox.inbox_subject(subject), event.body, timeout=5, stream=inbox.stream,
                         headers={MSG_ID: f"{event.webhook_id}@dead{seq}", WEBHOOK_ID: event.webhook_id})
        await js.delete_msg(inbox.dead_stream, seq)
    return len(chosen)


class DeadLetterStream:
    """``dlq list|replay`` for a JetStream inbox: the SQLite inbox's ``dead``/``replay``, one connection each."""

    def __init__(self, inbox: JetStreamInbox) -> None:
        self.inbox = inbox

    def dead(self, limit: int = 100) -> list[StoredEvent]:
        return [event for _, _, event in asyncio.run(self._with_js(lambda js: dead_letters(js, self.inbox, limit)))]

    def replay(self, webhook_ids: Optional[list[str]] = None) -> int:
        return asyncio.run(self._with_js(lambda js: replay(js, self.inbox, webhook_ids)))

    async def _with_js(self, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
        nc = await self.inbox.connect("makini-dlq", keep_trying=False)
        try:
            js = nc.jetstream()
            await self.inbox.ensure(js)
            return await work(js)
        finally:
            await nc.close()


def _float(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text else None
    except ValueError:
        return None

