"""Processors on JetStream: any number share one durable pull consumer; a message is acknowledged
only after its event was merged through the version-fenced path.

    fetch a batch ─> ids the ledger has: ack (merged before) ─> Processor.process_batch
        ─> merged: ledger, then ack · failed: redelivered later (nak with a delay), or at the
           limit dead-lettered, then terminated

- Scale-out: each message is handed to one processor at a time. Nothing assumes
  an order: the fence keeps the newest version whatever arrives first.
- A processor killed mid-batch acknowledged nothing of it; after ``ack_wait``
  the server hands those messages to another processor. While a batch merges
  (which may wait for the writer lock behind a sync) the processor says
  "in progress" every ``ack_wait / 3``, so a slow merge is not redelivered
  under it.
- No double effect: the ledger (KV ``STREAM_done``) is written before the ack,
  so a message merged but not acknowledged comes back and is acknowledged
  without merging again; and a merge done twice regardless is harmless, the
  fence keeps the newest version.
- Retries and dead letters: the server counts deliveries (``num_delivered``).
  A failed event is retried after 5 s, 10 s, 20 s ... (at most 5 min); the
  delivery that reaches ``max_attempts`` and fails again is dead-lettered by
  this processor before it gives the message up (``jetstream_dlq.py``), and an
  event that can never apply (an unknown entity) at once. A message delivered
  more than twice ``max_attempts`` times without any outcome (processors died
  holding it: an event that kills its processor, say) is dead-lettered without
  another try, so it cannot circle for ever.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Coroutine, Optional, TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from makini_sync.webhooks.inbox import StoredEvent
from makini_sync.webhooks.jetstream_dlq import dead_letter
from makini_sync.webhooks.jetstream_inbox import JetStreamInbox, ledger_key, webhook_id_of
from makini_sync.webhooks.processor import ProcessStats, Processor

logger = logging.getLogger(__name__)

FETCH_WAIT = 1.0  # seconds a fetch waits for messages before the drain looks around
RETRY_MAX = 300.0
OUTLIVED_FACTOR = 2
T = TypeVar("T")


@dataclass
class ConsumerOptions:
    batch_size: int = 500
    ack_wait: float = 30.0  # only when this processor creates the consumer; an existing one keeps its own
    retry_base: float = 5.0  # first retry delay; doubled per delivery
    once: bool = False  # drain, then stop: no waiting for the broker, and an end when nothing is left


class BatchOutcomes:
    """The ``Ledger`` of one fetched batch: what ``process_batch`` decided, for acks to follow."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.failed: dict[str, tuple[str, int]] = {}  # webhook-id -> (error, attempts allowed)

    def mark_done(self, webhook_ids: list[str]) -> None:
        self.done.update(webhook_ids)

    def mark_failed(self, webhook_ids: list[str], error: str, max_attempts: int) -> None:
        for webhook_id in webhook_ids:
            self.failed[webhook_id] = (error, max_attempts)


class JetStreamProcessor:
    """``drain()`` like ``Processor.drain``, on JetStream.

    The merge runs on the thread that calls ``drain`` (the main thread for
    ``process``), as the SQLite processor's does: dlt forks its normalize
    workers from there, and switches to the slower spawn from any other
    thread. The broker's I/O runs on an event loop in a thread of its own,
    which keeps the in-progress acks going while the merge holds the caller.
    """

    def __init__(self, inbox: JetStreamInbox, processor: Processor, options: ConsumerOptions) -> None:
        self.inbox, self.processor, self.options = inbox, processor, options
        self.nc: Optional[NATS] = None
        self.js: Optional[JetStreamContext] = None
        self.sub: Optional[JetStreamContext.PullSubscription] = None
        self.ledger: Optional[KeyValue] = None
        self._retrying: set[int] = set()  # stream sequences this processor sent back, not seen since
        self._connecting: Optional[asyncio.Task] = None
        self._loop = asyncio.new_event_loop()
        self._io = threading.Thread(target=self._loop.run_forever, name="jetstream-io", daemon=True)
        self._io.start()

    def drain(self) -> ProcessStats:
        """Process what the consumer hands out until a fetch comes back empty; with ``once``, until
        nothing is left anywhere but the retries this processor scheduled."""
        stats = ProcessStats()
        while True:
            try:
                if not self._run(self._subscribe()):  # no broker yet: the caller's loop goes on (polling fallback)
                    return stats
                msgs = self._run(self._fetch())
                if msgs:
                    self._process(msgs, stats)
                    continue
                if not self.options.once or self._run(self._settled()):
                    return stats
            except nats.errors.Error as exc:
                if self.options.once:
                    raise
                logger.warning("processor on %s: %s: %s; trying again", self.inbox, type(exc).__name__, exc)
                self.sub = None  # the consumer or stream may be gone: made again on the next drain
                return stats

    def close(self) -> None:
        async def disconnect() -> None:
            if self._connecting is not None and not self._connecting.done():
                self._connecting.cancel()
                await asyncio.wait({self._connecting})
            if self.nc is not None and not self.nc.is_closed:
                await self.nc.close()

        self._run(disconnect())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._io.join(timeout=10)
        self._loop.close()

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def _process(self, msgs: list[Msg], stats: ProcessStats) -> None:
        by_id = self._run(self._sort_out(msgs, stats))
        if not by_id:
            return
        events = [StoredEvent(webhook_id, held[0].metadata.timestamp.timestamp(), held[0].data,
                              held[0].metadata.num_delivered - 1) for webhook_id, held in by_id.items()]
        outcomes = BatchOutcomes()
        held = [msg for msgs_of_id in by_id.values() for msg in msgs_of_id]
        heartbeat = asyncio.run_coroutine_threadsafe(self._in_progress(held), self._loop)
        try:
            self.processor.process_batch(events, stats, outcomes)
        except Exception:  # noqa: BLE001 - what it recorded stands; the rest is retried
            logger.exception("a batch of %d webhooks stopped before every outcome was known", len(events))
        finally:
            heartbeat.cancel()
        self._run(self._settle(by_id, outcomes, stats))

    async def _in_progress(self, held: list[Msg]) -> None:
        while True:
            await asyncio.sleep(self.options.ack_wait / 3)
            for msg in held:
                await msg.in_progress()

    async def _subscribe(self) -> bool:
        if self.nc is None:
            if self.options.once:
                self.nc = await self.inbox.connect("makini-processor", keep_trying=False)
            else:  # connecting goes on across drains, while the caller runs its polling fallback between them
                if self._connecting is None:
                    self._connecting = asyncio.ensure_future(self.inbox.connect("makini-processor", keep_trying=True))
                finished, _ = await asyncio.wait({self._connecting}, timeout=FETCH_WAIT)
                if not finished:
                    return False
                self.nc = self._connecting.result()
            self.js = self.nc.jetstream()
        if self.sub is None:
            assert self.js is not None
            await self.inbox.ensure(self.js)
            await self.inbox.ensure_consumer(self.js, self.options.ack_wait)
            self.ledger = await self.js.key_value(self.inbox.ledger_bucket)
            self.sub = await self.js.pull_subscribe_bind(durable=self.inbox.consumer, stream=self.inbox.stream)
        return True

    async def _fetch(self) -> list[Msg]:
        assert self.sub is not None
        try:
            return await self.sub.fetch(self.options.batch_size, timeout=FETCH_WAIT)
        except TimeoutError:  # nothing came (nats-py raises its own subclass or asyncio's, by timing)
            return []

    async def _settled(self) -> bool:
        assert self.js is not None
        info = await self.js.consumer_info(self.inbox.stream, self.inbox.consumer)
        return not info.num_pending and (info.num_ack_pending or 0) <= len(self._retrying)

    async def _sort_out(self, msgs: list[Msg], stats: ProcessStats) -> dict[str, list[Msg]]:
        """The messages to merge, by webhook-id; those merged before are acknowledged, those that
        cannot be merged (no id, outlived their processors) dead-lettered."""
        by_id: dict[str, list[Msg]] = defaultdict(list)
        for msg in msgs:
            self._retrying.discard(msg.metadata.sequence.stream)
            webhook_id = webhook_id_of(msg.headers)
            if webhook_id is None:
                stats.dead_lettered += await self._dead_letter(
                    msg, f"<no id, inbox {msg.metadata.sequence.stream}>", "the message has no webhook-id (Nats-Msg-Id)")
            else:
                by_id[webhook_id].append(msg)
        for webhook_id in await self._already_merged(list(by_id)):
            for msg in by_id.pop(webhook_id):
                await msg.ack()
                stats.skipped += 1
        outlived = OUTLIVED_FACTOR * self.processor.max_attempts
        for webhook_id, held in list(by_id.items()):
            if held[0].metadata.num_delivered > outlived:
                for msg in by_id.pop(webhook_id):
                    stats.dead_lettered += await self._dead_letter(
                        msg, webhook_id,
                        f"delivered {msg.metadata.num_delivered} times without an outcome: the processors holding it died")
        return by_id

    async def _settle(self, by_id: dict[str, list[Msg]], outcomes: BatchOutcomes, stats: ProcessStats) -> None:
        merged = [w for w in by_id if w in outcomes.done and w not in outcomes.failed]
        if await self._record_merged(merged):
            for webhook_id in merged:
                for msg in by_id[webhook_id]:
                    await msg.ack()
        # (if the ledger could not be written, the merged messages are left to ack_wait: redelivered, merged
        # again, harmless)
        unknown = ("the batch stopped before this event's outcome was known", self.processor.max_attempts)
        for webhook_id, held in by_id.items():
            if webhook_id in merged:
                continue
            error, allowed = outcomes.failed.get(webhook_id, unknown)
            for msg in held:
                delivered = msg.metadata.num_delivered
                if delivered >= allowed:
                    # process_batch counted those it dead-letters at once (allowed 1)
                    stats.dead_lettered += await self._dead_letter(msg, webhook_id, error) and allowed > 1
                else:
                    await msg.nak(delay=min(self.options.retry_base * 2 ** (delivered - 1), RETRY_MAX))
                    self._retrying.add(msg.metadata.sequence.stream)

    async def _dead_letter(self, msg: Msg, webhook_id: str, error: str) -> bool:
        """Into the dead-letter stream, acknowledged there, and only then off the inbox; False if it stays."""
        assert self.js is not None
        delivered = msg.metadata.num_delivered
        try:
            await dead_letter(self.js, self.inbox, msg, webhook_id, error)
        except Exception as exc:  # noqa: BLE001 - it stays in the inbox and comes back
            logger.error("webhook %s could not be dead-lettered (%s: %s); it stays in the inbox",
                         webhook_id, type(exc).__name__, exc)
            await msg.nak(delay=min(self.options.retry_base * 2 ** (delivered - 1), RETRY_MAX))
            return False
        await msg.term()
        logger.error("webhook %s dead-lettered after %d deliveries: %s", webhook_id, delivered, error)
        return True

    async def _already_merged(self, webhook_ids: list[str]) -> set[str]:
        assert self.ledger is not None
        ledger = self.ledger
        found = await asyncio.gather(*(ledger.get(ledger_key(w)) for w in webhook_ids), return_exceptions=True)
        merged = set()
        for webhook_id, entry in zip(webhook_ids, found, strict=True):
            if not isinstance(entry, BaseException):
                merged.add(webhook_id)
            elif not isinstance(entry, KeyNotFoundError):  # unknown: merge it (again), the fence makes it harmless
                logger.warning("ledger lookup for %s failed: %s", webhook_id, entry)
        return merged

    async def _record_merged(self, webhook_ids: list[str]) -> bool:
        assert self.ledger is not None
        ledger, stamp = self.ledger, f"{time.time():.3f}".encode()
        written = await asyncio.gather(*(ledger.put(ledger_key(w), stamp) for w in webhook_ids),
                                       return_exceptions=True)
        failures = [r for r in written if isinstance(r, BaseException)]
        if failures:
            logger.error("the ledger did not record %d merged webhook(s) (%s); they are redelivered and skipped "
                         "by the fence", len(failures), failures[0])
        return not failures
