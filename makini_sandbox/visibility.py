"""Late visibility: changes the source system made that Makini has not synced yet.

The contract's "Late visibility" paragraph: a change shows in the list
endpoints only after Makini's next successful sync of the connection, with the
source's `updated_at` (which can be older than records already served), and
`GET /api/v1/sync-status` bounds it: every change with `updated_at <=
last_successful_sync_at` is visible.

By default the sandbox publishes every change at once. A change made with
`hold` is kept here instead, until the sandbox's scheduled Makini sync
(`POST /_sandbox/makini-sync`) publishes it, webhooks included. While a
change is held, the bound the sandbox reports stays below it, so the
contract's promise holds at every moment.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from .clock import fmt_ms

SYNC_STATUS_ANSWERS = ("bound", "without_bound", "error")
SCHEDULE_MS = 15 * 60_000


@dataclass
class HeldChange:
    updated_ms: int  # the change's updated_at in the source system
    publish: Callable[[], None]  # puts it in the store and queues its webhooks


@dataclass
class Visibility:
    """One connection's unpublished changes and what its `/sync-status` answers."""

    synced_ms: int  # when the sandbox's Makini sync last published
    held: list[HeldChange] = field(default_factory=list)
    answer: str = "bound"  # how /sync-status answers: SYNC_STATUS_ANSWERS
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def hold(self, change: HeldChange) -> None:
        with self.lock:
            self.held.append(change)

    def bound_ms(self, last_change_ms: int) -> int:
        """`last_successful_sync_at`: every change at or before it is visible."""
        bound = max(self.synced_ms, last_change_ms)
        with self.lock:
            if self.held:
                bound = min(bound, min(c.updated_ms for c in self.held) - 1)
        return bound

    def publish(self, now_ms: int) -> int:
        """The scheduled sync: every held change becomes visible, in the order it was made."""
        with self.lock:
            held, self.held = self.held, []
        for change in held:
            change.publish()
        self.synced_ms = max(self.synced_ms, now_ms)
        return len(held)

    def status(self, last_change_ms: int, failed_because: str | None) -> dict:
        bound = self.bound_ms(last_change_ms)
        body = {
            "status": "failed" if failed_because else "completed",
            "last_successful_sync_at": fmt_ms(bound),
            "next_scheduled_sync_at": fmt_ms(self.synced_ms + SCHEDULE_MS),
            "error": failed_because,
        }
        if self.answer == "without_bound":
            del body["last_successful_sync_at"]
        return body
