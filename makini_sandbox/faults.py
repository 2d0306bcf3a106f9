"""Seeded fault injection and the per-connection rate limiter.

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


class RateDecision(NamedTuple):
    allowed: bool
    limit: int
    remaining: int
    retry_after: int   # whole seconds until the window resets (when refused)


class RateLimiter:
    """Fixed one-minute windows on the sandbox clock, per connection.

    Fixed windows (rather than a sliding log) make `Retry-After` exact and let
    `advance_clock(60)` reset a connection's budget deterministically.
    Refused requests do not use up budget.
    """

    def __init__(self, per_minute: int) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}
        self.set_limit(per_minute)

    def set_limit(self, per_minute: int) -> None:
        if int(per_minute) < 1:
            raise ValueError("per_minute must be >= 1")
        with self._lock:
            self.per_minute = int(per_minute)
            self._windows.clear()

    def check(self, connection_id: str, now_ms: int) -> RateDecision:
        window = now_ms // 60_000
        with self._lock:
            w, used = self._windows.get(connection_id, (window, 0))
            if w != window:
                used = 0
            limit = self.per_minute
            if used >= limit:
                self._windows[connection_id] = (window, used)
                wait = math.ceil(((window + 1) * 60_000 - now_ms) / 1000)
                return RateDecision(False, limit, 0, max(1, wait))
            self._windows[connection_id] = (window, used + 1)
            return RateDecision(True, limit, limit - used - 1, 0)
