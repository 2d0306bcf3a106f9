"""Cancelling the requests of one page feed's thread.

A walk that ends early (its extraction closed, another walk tripped the
connection's breaker) must not leave its thread sleeping out a retry budget
of minutes. The feed binds its cancel event to its thread; the session's
retries (``client.py``) stop at once when it is set, and their sleeps wake.
"""

from __future__ import annotations

import threading
from typing import Optional

_local = threading.local()


class Cancelled(Exception):
    """A request not sent, or not retried, because its walk ended."""


def bind(event: threading.Event) -> None:
    """Cancel this thread's requests when ``event`` is set."""
    _local.event = event


def _event() -> Optional[threading.Event]:
    return getattr(_local, "event", None)


def cancelled() -> bool:
    event = _event()
    return event is not None and event.is_set()


def sleep(seconds: float) -> None:
    """``time.sleep`` that wakes when this thread's requests are cancelled."""
    event = _event()
    if event is None:
        threading.Event().wait(seconds)
    else:
        event.wait(seconds)
