"""How far a connection's data is known to be complete: the bookmark never passes it.

Makini publishes a change only after its next sync of the customer's system,
with the source's ``updated_at``, which can be older than records already
served (the contract's "Late visibility"). ``GET /api/v1/sync-status``
bounds this: every change with ``updated_at <= last_successful_sync_at`` is
visible. A walk's bookmark is capped at that bound (and at the server's clock
when the walk started), less an optional lookback, so every change Makini
publishes later is still inside the next run's ``modified_after``.

The lookback is for deployments whose status endpoint is missing or
unreliable. Unset, it is 0 while the endpoint answers with the bound, and
``FALLBACK_LOOKBACK`` (a day: the contract's slowest sync schedule) when it
does not. A value set in config applies in both cases. Without a bound this
run, the last one read (kept in the bookmark's state) still caps the bookmark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from .cancellation import Cancelled
from .errors import ConfigurationError

logger = logging.getLogger(__name__)

SYNC_STATUS_PATH = "/api/v1/sync-status"
BOUND_FIELD = "last_successful_sync_at"
FALLBACK_LOOKBACK = timedelta(days=1)


@dataclass(frozen=True)
class CompletenessBound:
    """Where one connection's bookmarks may go at most in this run."""

    synced_at: Optional[datetime]  # last_successful_sync_at; None when the status did not give it
    lookback: timedelta

    fresh: bool = True  # False: synced_at is the last bound read by an earlier run

    def or_last_known(self, last_known: Optional[str]) -> "CompletenessBound":
        """Without a bound from this run's status, the last one read: Makini's syncs may
        be failing too, so a lookback from now alone could pass the true bound."""
        if self.synced_at is not None or not last_known:
            return self
        return CompletenessBound(_parse(last_known), self.lookback, fresh=False)

    def cap(self, server_time: Optional[datetime]) -> datetime:
        """The latest bookmark a walk that started at ``server_time`` may keep."""
        started = server_time or datetime.now(timezone.utc)
        bound = min(started, self.synced_at) if self.synced_at else started
        return bound - self.lookback


def lookback_setting(value: Any) -> Optional[timedelta]:
    """``sources.makini.lookback_seconds`` as a timedelta (None: unset)."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0:
        raise ConfigurationError(
            f"sources.makini.lookback_seconds must be a number of seconds >= 0, got {value!r}; "
            "e.g. lookback_seconds = 3600 in .dlt/config.toml (env SOURCES__MAKINI__LOOKBACK_SECONDS)"
        )
    return timedelta(seconds=seconds)


def read_bound(client: Any, connection_name: str, lookback: Optional[timedelta]) -> CompletenessBound:
    """The connection's bound from ``/sync-status``; a status that fails or lacks the
    field gives the fallback lookback and one WARNING, never an error."""
    problem, synced_at = None, None
    try:
        status = client.get_json(SYNC_STATUS_PATH, brief=True)
        raw = status.get(BOUND_FIELD) if isinstance(status, dict) else None
        if raw is None:
            problem = f"its answer has no {BOUND_FIELD}"
        else:
            synced_at = _parse(raw)
            if synced_at is None:
                problem = f"its {BOUND_FIELD} is not a timestamp ({str(raw)[:40]!r})"
    except Cancelled:
        raise  # the walk ended: no bound is learned, none is made up
    except Exception as exc:  # noqa: BLE001 - a status that fails never blocks the sync
        problem = f"it failed ({type(exc).__name__}: {exc})"
    if problem is None:
        return CompletenessBound(synced_at, lookback or timedelta(0))
    fallback = lookback if lookback is not None else FALLBACK_LOOKBACK
    logger.warning(
        "connection %s: %s gave no completeness bound: %s; bookmarks keep a lookback of %s instead "
        "(set sources.makini.lookback_seconds to choose it)",
        connection_name, SYNC_STATUS_PATH, problem, fallback,
    )
    return CompletenessBound(None, fallback)


def _parse(value: Any) -> Optional[datetime]:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
