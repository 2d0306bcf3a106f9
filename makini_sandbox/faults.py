"""Seeded fault injection and the per-connection rate limiter (N requests per W seconds).

Faults are drawn from `random.Random(seed)`, two draws per API request
(outcome, then slowness) whatever the settings, so the same seed and the same
sequence of requests give the same faults. Reconfiguring restarts the
sequence. Under concurrent clients the *order* of requests decides who gets
which fault; reproducibility holds for a given arrival order.
"""
from __future__ import annotations

import math
import random
import threading
from dataclasses import asdict, dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class FaultSettings:
    seed: int = 0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    drop_rate: float = 0.0
    cut_rate: float = 0.0  # the body stops halfway and the connection closes
    retry_after: int = 1
    outage_after: int = -1  # >= 0: that many requests are answered, then every one gets 503 (an outage)

    def __post_init__(self) -> None:
        rates = [rate for _, rate in self.kinds] + [self.slow_rate]
        if any(not 0.0 <= r <= 1.0 for r in rates):
            raise ValueError("fault rates must be between 0 and 1")
        if sum(rate for _, rate in self.kinds) > 1.0 + 1e-9:
            raise ValueError("rate_429 + rate_500 + rate_503 + drop_rate + cut_rate must not exceed 1")
        if self.slow_seconds < 0 or self.retry_after < 0:
            raise ValueError("slow_seconds and retry_after must be >= 0")

    @property
    def kinds(self) -> tuple[tuple[str, float], ...]:
        """The faults a request can draw, at most one each time, with their rates
        (slowness is drawn apart and can come with any of them)."""
        return (("drop", self.drop_rate), ("429", self.rate_429), ("500", self.rate_500), ("503", self.rate_503),
                ("cut", self.cut_rate))

    @property
    def active(self) -> bool:
        return self.slow_rate > 0 or self.outage_after >= 0 or any(rate for _, rate in self.kinds)


class Fault(NamedTuple):
    kind: str | None   # None, "drop", "cut", "429", "500" or "503"
    delay: float       # seconds to sleep before answering (0 = not slow)


NO_FAULT = Fault(None, 0.0)


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.configure(FaultSettings())

    def configure(self, settings: FaultSettings) -> None:
        with self._lock:
            self.settings = settings
            self._rng = random.Random(settings.seed)
            self._answered = 0

    def describe(self) -> dict:
        return asdict(self.settings)

    def draw(self) -> Fault:
        s = self.settings
        if not s.active:
            return NO_FAULT
        with self._lock:
            outcome, slow = self._rng.random(), self._rng.random()
            self._answered += 1
            if 0 <= s.outage_after < self._answered:
                return Fault("503", 0.0)
        kind = None
        edge = 0.0
        for name, rate in s.kinds:
            edge += rate
            if outcome < edge:
                kind = name
                break
        return Fault(kind, s.slow_seconds if slow < s.slow_rate else 0.0)


class RateLimit(NamedTuple):
    per_window: int   # requests admitted per window
    window_ms: int    # the window's length

    @property
    def window_seconds(self) -> float:
        return self.window_ms / 1000

    def describe(self) -> dict:
        return {"per_window": self.per_window, "window_seconds": self.window_seconds}


class RateDecision(NamedTuple):
    allowed: bool
    limit: int
    remaining: int
    reset: int          # whole seconds until the window ends (>= 1), rounded up
    window_seconds: float

    @property
    def retry_after(self) -> int:
        """What `Retry-After` says when refused: the wait until the window resets."""
        return self.reset


def rate_limit(per_window: int, window_seconds: float = 60.0) -> RateLimit:
    """A validated limit (ValueError saying what is wrong)."""
    if int(per_window) != per_window or int(per_window) < 1:
        raise ValueError(f"per_window must be a whole number >= 1, got {per_window!r}")
    seconds = float(window_seconds)
    if not (math.isfinite(seconds) and round(seconds * 1000) >= 1):
        raise ValueError(f"window_seconds must be a positive number of seconds, got {window_seconds!r}")
    return RateLimit(int(per_window), round(seconds * 1000))


class RateLimiter:
    """N requests per W seconds, in fixed windows on the sandbox clock, per connection.

    Fixed windows (rather than a sliding log) make `Retry-After` exact and let
    `advance_clock(W)` reset a connection's budget deterministically. Windows
    are aligned to multiples of W since the epoch (with the default W = 60, to
    the minute), so every connection's window turns at the same instant.
    Refused requests do not use up budget. `X-RateLimit-Reset` and
    `Retry-After` are whole seconds, rounded up (at least 1), also for a window
    that is not a whole number of seconds.

    One limit applies to every connection unless a connection has its own
    (`set_limit(..., connection_id=...)`). Setting the global limit starts
    afresh: per-connection limits are dropped and every window restarts, so
    one call puts the whole fleet back to a known plan. Setting a connection's
    limit restarts that connection's window only.
    """

    def __init__(self, per_window: int, window_seconds: float = 60.0) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}   # connection id -> (window index, used)
        self._own: dict[str, RateLimit] = {}              # per-connection limits
        self.set_limit(per_window, window_seconds)

    def set_limit(self, per_window: int, window_seconds: float = 60.0, connection_id: str | None = None) -> None:
        limit = rate_limit(per_window, window_seconds)
        with self._lock:
            if connection_id is None:
                self.default = limit
                self._own.clear()
                self._windows.clear()
            else:
                self._own[connection_id] = limit
                self._windows.pop(connection_id, None)

    def describe(self) -> dict:
        with self._lock:
            return {**self.default.describe(),
                    "connections": {cid: limit.describe() for cid, limit in self._own.items()}}

    def check(self, connection_id: str, now_ms: int) -> RateDecision:
        """Admit one request (using budget) or refuse it (using none)."""
        return self._decide(connection_id, now_ms, consume=True)

    def peek(self, connection_id: str, now_ms: int) -> RateDecision:
        """The connection's budget now, using none (for answers that bypass the limiter)."""
        return self._decide(connection_id, now_ms, consume=False)

    def _decide(self, connection_id: str, now_ms: int, consume: bool) -> RateDecision:
        with self._lock:
            limit = self._own.get(connection_id, self.default)
            window = now_ms // limit.window_ms
            w, used = self._windows.get(connection_id, (window, 0))
            if w != window:
                used = 0
            reset = max(1, math.ceil(((window + 1) * limit.window_ms - now_ms) / 1000))
            allowed = used < limit.per_window
            if allowed and consume:
                used += 1
                self._windows[connection_id] = (window, used)
            return RateDecision(allowed, limit.per_window, max(0, limit.per_window - used), reset,
                                limit.window_seconds)
