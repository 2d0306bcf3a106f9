"""The receiver's store on JetStream: verify, publish, and answer 200 only once JetStream acknowledged.

The same checks as the SQLite inbox's writer (``signatures.verify``, then
``inbox_writer.check_event``), so the same answers: a 401 or 400 publishes
nothing. A verified event is published with its webhook-id as ``Nats-Msg-Id``
(``jetstream_inbox.py``); the 200 waits for the publish acknowledgement, and
anything else (no connection, no acknowledgement within 5 s) is a 503 that
Makini retries, possibly on another receiver.

Verification runs on the event loop here. The SQLite inbox moved it into its
writer process because that process also waits on fsync; here the store is a
network round trip the loop awaits without blocking. Whether verification
should leave the loop at high rates is for the JetStream run of
benchmarks/receiver_benchmark.py to say.

The receiver starts even when the broker is down: until it connects (and
while nats-py reconnects) ``/healthz`` answers 503 and so does every event,
so a load balancer sends the traffic to a receiver that can store it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional, Sequence

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError

from makini_sync.webhooks.inbox_writer import check_event, rejection_text
from makini_sync.webhooks.jetstream_inbox import (
    UNKNOWN_COUNTS, BrokerUnreachable, JetStreamInbox, broker_error_logger,
)
from makini_sync.webhooks.signatures import Rejected, parse_secrets, verify
from makini_sync.webhooks.writer_client import Reply

logger = logging.getLogger(__name__)

HEADER_ALLOWANCE = 4096  # Nats-Msg-Id, Nats-Expected-Stream and the protocol line around a body


def unavailable(why: str) -> Reply:
    return 503, rejection_text(Rejected(503, "store", f"{why}; retry"))


class JetStreamStore:
    def __init__(self, secrets: Sequence[str], inbox: JetStreamInbox, max_body: int) -> None:
        self.inbox, self.max_body = inbox, max_body
        self.verifiers = parse_secrets(list(secrets))
        self.nc: Optional[NATS] = None
        self.js: Optional[JetStreamContext] = None
        self.ready = False  # connected once and the streams exist
        self._connecting: Optional[asyncio.Task] = None
        self._log_error = broker_error_logger(inbox.server)

    async def start(self) -> None:
        self._connecting = asyncio.ensure_future(self._connect())

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()

    async def submit(self, webhook_id: bytes, stamp: bytes, signature: bytes, body: bytes) -> Reply:
        headers = {"webhook-id": webhook_id.decode("latin-1"), "webhook-timestamp": stamp.decode("latin-1"),
                   "webhook-signature": signature.decode("latin-1")}
        try:
            verified_id = verify(self.verifiers, body, headers)
            event = check_event(body)
        except Rejected as rejected:
            return rejected.status, rejection_text(rejected)
        if not self.ready or self.js is None or self.nc is None or not self.nc.is_connected:
            return unavailable(f"the broker at {self.inbox.server} is unreachable")
        subject = self.inbox.subject(event)
        try:
            try:
                new = await self.inbox.publish(self.js, verified_id, subject, body)
            except NoStreamResponseError:  # the stream is gone (deleted, or a server that lost its disk)
                await self.inbox.ensure(self.js)
                new = await self.inbox.publish(self.js, verified_id, subject, body)
        except Exception as exc:  # noqa: BLE001 - not acknowledged: the sender retries
            logger.warning("webhook %s not stored on %s: %s: %s", verified_id, self.inbox, type(exc).__name__, exc)
            return unavailable(f"the broker did not acknowledge the event ({type(exc).__name__})")
        return 200, b"stored" if new else b"duplicate"

    async def problem(self) -> Optional[str]:
        """Why events cannot be stored now (``/healthz`` answers 503 with it), or None."""
        if not self.ready or self.nc is None:
            return f"not connected to the broker at {self.inbox.server} yet"
        if not self.nc.is_connected:
            return f"the broker at {self.inbox.server} is unreachable (reconnecting)"
        try:
            await self.nc.flush(timeout=1)
        except Exception as exc:  # noqa: BLE001 - a broker that does not answer a ping is as good as down
            return f"the broker at {self.inbox.server} does not answer ({type(exc).__name__})"
        return None

    async def counts(self) -> dict:
        if self.js is None or self.nc is None or not self.nc.is_connected:
            return dict(UNKNOWN_COUNTS)
        try:
            return await self.inbox.counts(self.js)
        except Exception as exc:  # noqa: BLE001 - the gauges show NaN; the counters still count
            logger.warning("inbox gauges unavailable from %s: %s", self.inbox, exc)
            return dict(UNKNOWN_COUNTS)

    async def _connect(self) -> None:
        while self.nc is None:
            try:
                self.nc = await self.inbox.connect("makini-receiver", keep_trying=True, on_error=self._log_error)
            except BrokerUnreachable as exc:
                await self._log_error(exc)
                await asyncio.sleep(1)
        self.js = self.nc.jetstream()
        if self.nc.max_payload < self.max_body + HEADER_ALLOWANCE:
            logger.error("the NATS server's max_payload is %d bytes: events over %d bytes will get 503 until it is "
                         "raised (max_payload: 2MB in its config)", self.nc.max_payload,
                         self.nc.max_payload - HEADER_ALLOWANCE)
        while True:
            try:
                await self.inbox.ensure(self.js)
                break
            except Exception as exc:  # noqa: BLE001 - logged; health stays 503 until the streams exist
                await self._log_error(exc)
                await asyncio.sleep(1)
        self.ready = True
        logger.info("receiver storing into %s", self.inbox)
