"""Response latency: how long every public API request takes before it is answered.

The contract puts Makini in front of each customer's system: 100 ms to several
seconds per request. The sandbox answers in microseconds unless told
otherwise: `latency_ms` (default 0) delays every `/api/` response, and a
connection can have its own value (a slow customer system). Control calls
(`/_sandbox/`) are never delayed.

The delay is slept in the request's own handler thread before the request is
handled (the server is threaded, one thread per client connection), with no
lock held, so concurrent clients wait side by side, not in a queue. Sleeping
before handling, not after, keeps the page, the rate-limit window and the
`Date` header of one response at the same instant, as a remote server's are.
The delay comes on top of the slow fault (faults.py), which stays random.
"""
from __future__ import annotations

import math
import threading


def checked_latency_ms(latency_ms: float) -> float:
    """`latency_ms` as a float (ValueError unless a finite number >= 0)."""
    value = float(latency_ms)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"latency_ms must be a number of milliseconds >= 0, got {latency_ms!r}")
    return value


class Latency:
    """The global latency and per-connection overrides, in milliseconds.

    Setting the global value starts afresh (every override is dropped), as the
    rate limiter does, so one call puts the whole fleet back to a known state.
    """

    def __init__(self, latency_ms: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._own: dict[str, float] = {}
        self.set(latency_ms)

    def set(self, latency_ms: float, connection_id: str | None = None) -> None:
        value = checked_latency_ms(latency_ms)
        with self._lock:
            if connection_id is None:
                self.default_ms = value
                self._own.clear()
            else:
                self._own[connection_id] = value

    def seconds(self, connection_id: str | None) -> float:
        """The delay for one request of `connection_id` (None: unauthenticated, the global value)."""
        ms = self._own.get(connection_id, self.default_ms) if connection_id is not None else self.default_ms
        return ms / 1000

    def describe(self) -> dict:
        with self._lock:
            return {"latency_ms": self.default_ms, "connections": dict(self._own)}
