"""The webhook inbox on NATS JetStream: what lives on the broker, and how to reach it.

Everything is named after the stream of ``nats://HOST:PORT/STREAM`` (default ``makini``)::

    STREAM           the inbox. Subjects STREAM.<connection_id>.<event type>, e.g.
                     makini.conn_a.record_updated (each token reduced to letters,
                     digits, _ and -). Work-queue retention: a message leaves the
                     stream when a processor acknowledges it.
    STREAM_dead      the dead letters (``jetstream_dlq.py``), subjects STREAM_dead.<...>.
    KV STREAM_done   the idempotency ledger: webhook-ids already merged, kept 8 days
                     (the SQLite inbox's retention), well past Makini's 24 h of retries.
    consumer ``processors``  one durable pull consumer on STREAM that every processor
                     shares (``jetstream_processor.py``).

Receivers and processors create what is missing with the settings below, and
use what exists as it is: an operator who made the stream with other settings
(three replicas, a size limit) keeps them.

Durability. A receiver answers 200 only after JetStream acknowledged the
publish. The streams use file storage; what an acknowledgement survives is
the server's choice:

- ``sync_interval`` (server config, ``jetstream { sync_interval: always }``).
  By default the server fsyncs every 2 minutes, so an acknowledged message
  survives a killed server process (it is in the OS page cache) but not a
  host crash or power loss (nats-io/nats-server#7564). ``always`` fsyncs each
  write before acknowledging: a single-node deployment needs it, and pays
  for it in publish latency and throughput. (Debian's nats-server 2.9
  rejects the option as unknown; current releases have it.)
- ``replicas`` (stream setting, 3 on a three-server cluster). An
  acknowledgement then means a majority holds the message, so one host lost
  loses nothing and the endpoint stays up; it costs two more servers and a
  replication round trip per publish, and a correlated power loss of the
  majority can still lose the last 2 minutes unless sync_interval is lowered too.

Duplicates. The webhook-id is each message's ``Nats-Msg-Id``; the stream drops
a second publish of an id within ``DUPLICATE_WINDOW`` (1 hour: Makini's first
retries, 30 s, 1, 2, 4 ... minutes apart, fall inside it; the server keeps every
id of the window in memory, so a longer window costs memory at high rates).
A retry beyond the window is stored again, and the processors skip it because
the ledger has its id (and the version fence would make it harmless anyway).

Sizes. Bodies are up to 1 MiB (``receiver.MAX_BODY``); the server's
``max_payload`` (default 1 MB) must be larger, e.g. ``max_payload: 2MB``, or the
largest events get 503 until it is raised (the receiver logs it at start).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import re
import socket
import time
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy, ConsumerConfig, DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig,
)
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError

from makini_sync.webhooks.inbox import RETENTION_DAYS
from makini_sync.webhooks.inbox_url import JetStreamAddress

logger = logging.getLogger(__name__)

DUPLICATE_WINDOW = 3600.0
PUBLISH_TIMEOUT = 5.0  # Makini waits 10 s for an answer; a 503 before that lets it retry elsewhere
LEDGER_TTL = RETENTION_DAYS * 86400.0
CONSUMER = "processors"
MAX_ACK_PENDING = 10_000  # messages held by all processors together (batches of 500: 20 processors)
WEBHOOK_ID = "Makini-Webhook-Id"  # set where Nats-Msg-Id is not the webhook-id (a replay)
MSG_ID = "Nats-Msg-Id"
TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_TOKEN = 64


class BrokerUnreachable(Exception):
    """The NATS server did not answer; the message names it and what to check."""


def subject_token(value: object) -> str:
    """One subject token: letters, digits, _ and - kept, anything else (dots, wildcards, spaces) as ``_``."""
    text = value if isinstance(value, str) else ""
    return TOKEN_UNSAFE.sub("_", text)[:MAX_TOKEN] or "_"


def ledger_key(webhook_id: str) -> str:
    """A KV key for any webhook-id (keys allow fewer characters than ids may hold)."""
    return base64.urlsafe_b64encode(webhook_id.encode()).decode().rstrip("=")


def webhook_id_of(headers: Optional[dict]) -> Optional[str]:
    headers = headers or {}
    return headers.get(WEBHOOK_ID) or headers.get(MSG_ID)


class JetStreamInbox:
    """The names and settings of one JetStream inbox; it holds no connection (each user opens its own)."""

    def __init__(self, address: JetStreamAddress) -> None:
        self.address = address
        self.server, self.stream = address.server, address.stream
        self.dead_stream = f"{self.stream}_dead"
        self.ledger_bucket = f"{self.stream}_done"
        self.consumer = CONSUMER

    def __repr__(self) -> str:
        return f"JetStreamInbox({self.server}/{self.stream})"

    def subject(self, event: dict) -> str:
        return f"{self.stream}.{subject_token(event.get('connection_id'))}.{subject_token(event.get('type'))}"

    def dead_subject(self, subject: str) -> str:
        """The dead letter's subject: the inbox subject under the dead-letter stream's name."""
        _, _, rest = subject.partition(".")
        return f"{self.dead_stream}.{rest or '_'}"

    def inbox_subject(self, dead_subject: str) -> str:
        _, _, rest = dead_subject.partition(".")
        return f"{self.stream}.{rest or '_'}"

    # connecting --------------------------------------------------------------------------------------------

    async def connect(self, client_name: str, keep_trying: bool,
                      on_error: Optional[Callable[[Exception], Awaitable[None]]] = None) -> NATS:
        """A connection. ``keep_trying``: wait until the server answers and reconnect for ever after
        (receivers, continuous processors); otherwise two quick tries, then BrokerUnreachable."""
        try:
            return await nats.connect(
                self.server, name=client_name, connect_timeout=2, reconnect_time_wait=1,
                allow_reconnect=keep_trying, max_reconnect_attempts=-1 if keep_trying else 1,
                ping_interval=5, max_outstanding_pings=2,  # a silent broker shows as down within ~15 s
                error_cb=on_error or broker_error_logger(self.server),
            )
        except Exception as exc:  # noqa: BLE001 - every way of not connecting is the same to the caller
            raise BrokerUnreachable(f"the NATS server at {self.server} is unreachable ({type(exc).__name__}: {exc}); "
                                    "is nats-server running with JetStream (-js)?") from None

    async def ensure(self, js: JetStreamContext) -> None:
        """Create the inbox and dead-letter streams and the ledger if they are missing."""
        await _ensure_stream(js, StreamConfig(
            name=self.stream, description="makini webhooks: verified events waiting to be merged",
            subjects=[f"{self.stream}.>"], retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
            # a full stream refuses new events (the receiver answers 503, Makini retries) rather than
            # dropping old ones nobody has merged yet
            discard=DiscardPolicy.NEW, duplicate_window=DUPLICATE_WINDOW, num_replicas=1,
        ))
        await _ensure_stream(js, StreamConfig(
            name=self.dead_stream, description="makini webhooks: events that could not be merged (dlq list|replay)",
            subjects=[f"{self.dead_stream}.>"], retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
            discard=DiscardPolicy.NEW, duplicate_window=DUPLICATE_WINDOW, num_replicas=1,
        ))
        try:
            await js.key_value(self.ledger_bucket)
        except BucketNotFoundError:
            await js.create_key_value(KeyValueConfig(
                bucket=self.ledger_bucket, description="makini webhooks: webhook-ids already merged",
                history=1, ttl=LEDGER_TTL, storage=StorageType.FILE,
            ))

    async def ensure_consumer(self, js: JetStreamContext, ack_wait: float) -> None:
        try:
            await js.consumer_info(self.stream, self.consumer)
            return  # in use as it is, like the streams
        except NotFoundError:
            pass
        config = ConsumerConfig(
            durable_name=self.consumer, description="makini webhook processors",
            ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait,
            # unlimited: the processors dead-letter an event themselves before giving it up, so no
            # event is ever dropped by the server between a MAX_DELIVERIES advisory and the DLQ
            max_deliver=-1, max_ack_pending=MAX_ACK_PENDING, filter_subject=f"{self.stream}.>",
        )
        try:
            await js.add_consumer(self.stream, config)
        except BadRequestError:  # another processor created it a moment ago
            await js.consumer_info(self.stream, self.consumer)

    # the receiver's write ----------------------------------------------------------------------------------

    async def publish(self, js: JetStreamContext, webhook_id: str, subject: str, body: bytes) -> bool:
        """Store one event; True if new, False if the stream already had this webhook-id (a duplicate)."""
        ack = await js.publish(subject, body, timeout=PUBLISH_TIMEOUT, stream=self.stream,
                               headers={MSG_ID: webhook_id})
        return not ack.duplicate

    # the gauges --------------------------------------------------------------------------------------------

    async def counts(self, js: JetStreamContext) -> dict:
        """The gauges ``metrics.render_metrics`` shows, read from the broker."""
        inbox = await js.stream_info(self.stream)
        dead = await js.stream_info(self.dead_stream)
        done = await js.stream_info(f"KV_{self.ledger_bucket}")
        try:
            failing = (await js.consumer_info(self.stream, self.consumer)).num_redelivered or 0
        except NotFoundError:  # no processor has run yet
            failing = 0
        lag = 0.0
        if inbox.state.messages:
            try:  # work-queue retention: the first message left is the oldest not yet merged
                oldest = await js.get_msg(self.stream, inbox.state.first_seq)
                lag = max(time.time() - oldest.time.timestamp(), 0.0) if oldest.time else 0.0
            except NotFoundError:  # merged between the two calls
                pass
        return {"pending": inbox.state.messages, "done": done.state.messages, "dead": dead.state.messages,
                "failing": failing, "lag_seconds": lag}


def broker_error_logger(server: str) -> Callable[[Exception], Awaitable[None]]:
    """An error callback for nats-py, which reports every failed (re)connect attempt (its default
    prints a traceback each time): each kind of trouble is logged once, until it changes."""
    last = [""]

    async def log(exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text != last[0]:
            logger.warning("broker %s: %s", server, text)
            last[0] = text

    return log


UNKNOWN_COUNTS = {key: math.nan for key in ("pending", "done", "dead", "failing", "lag_seconds")}


def read_counts(address: JetStreamAddress, timeout: float = 5.0) -> dict:
    """The inbox's gauges for a one-off reader (the status view): connect, read, close.
    An unreachable broker or a stream not made yet gives ``UNKNOWN_COUNTS`` and an ``error``."""
    async def read() -> dict:
        parts = urlsplit(address.server)
        # refused at once rather than after nats-py's connect attempts
        socket.create_connection((parts.hostname, parts.port), timeout=timeout).close()
        client = await nats.connect(address.server, connect_timeout=timeout, allow_reconnect=False,
                                    max_reconnect_attempts=0, error_cb=broker_error_logger(address.server))
        try:
            return await JetStreamInbox(address).counts(client.jetstream(timeout=timeout))
        finally:
            await client.close()

    try:
        return asyncio.run(asyncio.wait_for(read(), timeout * 2))
    except Exception as exc:  # noqa: BLE001 - the status view reports the broker's trouble, it does not fail on it
        unknown = dict.fromkeys(UNKNOWN_COUNTS)  # None, not NaN: the status view prints JSON
        return {**unknown, "error": f"{address.server}/{address.stream}: {type(exc).__name__}: {exc}"}


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> Any:
    assert config.name is not None
    try:
        return await js.stream_info(config.name)
    except NotFoundError:
        pass
    try:
        return await js.add_stream(config)
    except BadRequestError as refused:  # created meanwhile by another receiver or processor, perhaps otherwise
        try:
            return await js.stream_info(config.name)
        except NotFoundError:
            raise refused from None  # something else: its subjects overlap another stream's, say
