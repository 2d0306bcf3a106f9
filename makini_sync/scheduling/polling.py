"""Polling as the safety net: an incremental sync per connection when webhooks go quiet.

A connection is synced when no event arrived for it within ``window`` seconds
(webhooks may have been lost while the receiver was down), and whenever Makini
says ``sync.completed`` (its own sync of the source system finished). The
sync is the ordinary incremental sync, so it fetches only what changed.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional, cast

from dlt.sources.helpers.rest_client.auth import BearerTokenAuth

from sources.makini.client import RetryPolicy
from sources.makini.connections import open_connections

from makini_sync.destinations.profiles import Profile
from makini_sync.run.sync import run_sync
from makini_sync.workers.selection import WorkerSelection
from makini_sync.webhooks.events import Lifecycle

logger = logging.getLogger(__name__)

# its own pipeline: a cron sync's state never holds the polled connections' bookmarks, nor the reverse
POLLING_WORKER = WorkerSelection(name="webhook_polling")


class PollingFallback:
    def __init__(self, profile: Profile, base_url: Optional[str], api_token: Any, window: float = 900.0) -> None:
        self.profile, self.window = profile, window
        self.base_url, self.api_token = base_url, api_token
        self.last_event: dict[str, float] = {}
        self.requested: set[str] = set()
        self._tokens: Optional[dict[str, str]] = None
        self.started = time.monotonic()

    def note(self, connection_id: Optional[str]) -> None:
        if connection_id:
            self.last_event[connection_id] = time.monotonic()

    def on_lifecycle(self, notice: Lifecycle) -> None:
        self.note(notice.connection_id)
        if notice.type == "sync.completed" and notice.connection_id:
            self.requested.add(notice.connection_id)

    def tokens(self) -> dict[str, str]:
        """connection id -> token, learned once from ``GET /api/v1/connection``."""
        if self._tokens is None:
            self._tokens = {}
            if self.base_url and self.api_token:
                for connection in open_connections(self.base_url, self.api_token, RetryPolicy(budget_seconds=30)):
                    try:
                        self._tokens[connection.identify()] = cast(BearerTokenAuth, connection.client.auth).token
                    except Exception as exc:  # noqa: BLE001 - reported, the others go on
                        logger.error("polling fallback cannot identify a connection: %s", exc)
        return self._tokens

    def due(self) -> list[str]:
        now = time.monotonic()
        quiet = [
            c for c in self.tokens()
            if now - self.last_event.get(c, self.started) >= self.window
        ]
        return sorted(set(quiet) | (self.requested & set(self.tokens())))

    def run_due(self) -> list[str]:
        synced = []
        for connection_id in self.due():
            logger.warning("polling connection %s (no webhook within %.0fs, or sync.completed)", connection_id, self.window)
            result = run_sync(self.profile, base_url=self.base_url, api_token=[self.tokens()[connection_id]],
                              selection=POLLING_WORKER)
            if not result.ok:
                for failure in result.report.failures:
                    logger.error("polling sync failed: %s", failure)
            self.requested.discard(connection_id)
            self.last_event[connection_id] = time.monotonic()
            synced.append(connection_id)
        return synced
