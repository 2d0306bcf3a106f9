"""The processor: drain the inbox in micro-batches through the fenced delta path.

A batch keeps the newest version per key (``load_deltas``) and merges it into
the same tables the sync writes. Lifecycle events (``sync.failed``,
``connection.*``) are logged at error level and recorded in the warehouse's
``connection_events`` table. A batch that fails is retried event by event so
one poison event cannot hold the others back; an event that fails
``max_attempts`` times moves to the dead-letter store.

Outcomes go to a ``Ledger``: the SQLite inbox, or for JetStream a record of
one fetched batch that ``jetstream_processor.py`` turns into acks, retries and
dead letters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

from makini_sync.integrity.deltas import DELTAS_PIPELINE, load_deltas
from makini_sync.destinations.profiles import DATASET_NAME, Profile, make_pipeline
from makini_sync.workers.naming import writer_pipeline_name
from makini_sync.webhooks.events import ALERT_EVENTS, BadEvent, Lifecycle, parse_event
from makini_sync.webhooks.inbox import Inbox, StoredEvent

logger = logging.getLogger(__name__)


@dataclass
class ProcessStats:
    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    skipped: int = 0  # already merged (a duplicate past the broker's window, or a replay)
    lifecycle: list[Lifecycle] = field(default_factory=list)


class Ledger(Protocol):
    def mark_done(self, webhook_ids: list[str]) -> None: ...
    def mark_failed(self, webhook_ids: list[str], error: str, max_attempts: int) -> None: ...


class Processor:
    def __init__(
        self,
        inbox: Optional[Inbox],  # None where events come from elsewhere (JetStream) with a ledger per batch
        profile: Profile,
        batch_size: int = 2000,
        max_attempts: int = 5,
        on_lifecycle: Optional[Callable[[Lifecycle], None]] = None,
    ) -> None:
        self.inbox, self.profile = inbox, profile
        self.batch_size, self.max_attempts = batch_size, max_attempts
        self.on_lifecycle = on_lifecycle
        self.pipeline = make_pipeline(profile, writer_pipeline_name(DELTAS_PIPELINE, profile.name, DATASET_NAME))

    def drain(self) -> ProcessStats:
        """Process until the inbox has no pending event that can be processed now."""
        assert self.inbox is not None, "drain() reads the SQLite inbox"
        stats = ProcessStats()
        seen_failures: set[str] = set()
        while True:
            events = [e for e in self.inbox.pending(self.batch_size) if e.webhook_id not in seen_failures]
            if not events:
                break
            failed = self.process_batch(events, stats)
            seen_failures.update(failed)  # retried on the next drain, not in a tight loop
        self.inbox.prune()
        return stats

    def process_batch(self, events: Sequence[StoredEvent], stats: ProcessStats,
                      ledger: Optional[Ledger] = None) -> set[str]:
        """Merge ``events``; their outcomes go to ``ledger`` (default: the inbox). The failed webhook-ids."""
        ledger = ledger if ledger is not None else self.inbox
        assert ledger is not None, "a processor without an inbox is given a ledger per batch"
        stats.batches += 1
        deltas, lifecycle, applied, bad = [], [], [], []
        for event in events:
            try:
                parsed = parse_event(event.webhook_id, event.body)
            except BadEvent as exc:
                bad.append((event.webhook_id, str(exc)))
                continue
            if isinstance(parsed, Lifecycle):
                lifecycle.append(parsed)
            elif parsed is not None:
                deltas.append((event.webhook_id, parsed))
            applied.append(event.webhook_id)
        for webhook_id, reason in bad:
            logger.error("webhook %s can never be applied (%s): dead-lettered", webhook_id, reason)
            ledger.mark_failed([webhook_id], reason, max_attempts=1)
            stats.dead_lettered += 1
        failed: set[str] = set()
        try:
            self._apply([d for _, d in deltas], lifecycle)
            ledger.mark_done(applied)
            stats.processed += len(applied)
        except Exception as exc:  # noqa: BLE001 - isolate the poison event, keep the others
            logger.error("a batch of %d webhooks failed (%s); retrying one by one", len(applied), exc)
            by_id = {w: d for w, d in deltas}
            notices = {n.webhook_id: n for n in lifecycle}
            for webhook_id in applied:
                try:
                    single = [by_id[webhook_id]] if webhook_id in by_id else []
                    self._apply(single, [notices[webhook_id]] if webhook_id in notices else [])
                    ledger.mark_done([webhook_id])
                    stats.processed += 1
                except Exception as single_exc:  # noqa: BLE001
                    logger.error("webhook %s failed: %s", webhook_id, single_exc)
                    ledger.mark_failed([webhook_id], f"{type(single_exc).__name__}: {single_exc}", self.max_attempts)
                    stats.failed += 1
                    failed.add(webhook_id)
        for notice in lifecycle:
            stats.lifecycle.append(notice)
            level = logging.ERROR if notice.type in ALERT_EVENTS else logging.INFO
            logger.log(level, "makini %s for connection %s: status=%s error=%s",
                       notice.type, notice.connection_id, notice.status, notice.error)
            if self.on_lifecycle is not None:
                self.on_lifecycle(notice)
        return failed

    def _apply(self, deltas: list, lifecycle: list[Lifecycle]) -> None:
        if deltas or lifecycle:
            # the writer locks are taken per batch, on a session of its own: a database restart
            # between batches costs nothing
            load_deltas(self.profile, deltas, events=[n.row() for n in lifecycle], pipeline=self.pipeline)
