"""One connection's rate budget: pace its requests instead of running into 429s.

Makini limits each connection per time window and does not publish the
numbers. Responses may say ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining``
(some servers also ``X-RateLimit-Reset``), and a 429 says ``Retry-After``. The
pacer, shared by every walk of one connection (and by nothing else, so one
connection's limit never slows another), keeps three rules:

- never more requests in flight than the window has left (``Remaining``);
- once the window is spent (a 429, or ``Remaining`` at 0), nobody sends until
  it resets: at ``Retry-After`` or ``X-RateLimit-Reset``, or at the next
  reset predicted from the window's length; when neither is known, one
  request asks (and its 429 tells);
- a server that sends no ``Remaining`` but whose window is known (configured
  per connection, or learned) gets at most ``Limit`` requests per window, in
  a moving window kept by the ``limits`` library, which never holds a lock
  while a caller waits.

The window's length is learned from two resets the server reported: a
client that spends every window sees consecutive ones. A Retry-After in
whole seconds puts each estimate up to a second late, so two estimates
under 1.5 s apart are taken for one reset told twice and the next window
is asked about once more. Waiting happens
outside every lock, in the caller's thread, and wakes when the walk is
cancelled (``cancellation.py``).
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from . import cancellation
from .errors import ConfigurationError

_BUDGET = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d*\.?\d*)\s*(s|sec|second|seconds|m|min|minute|minutes)\s*$")


@dataclass(frozen=True)
class RateBudget:
    """``requests`` per ``window_seconds``, as a connection's plan allows."""

    requests: int
    window_seconds: float

    @classmethod
    def parse(cls, text: Any, where: str) -> "RateBudget":
        """``"600/min"``, ``"10/5s"``, ``"100 per 60 seconds"``."""
        match = _BUDGET.match(str(text).lower())
        count = float(match.group(2) or 1) if match else 0.0
        if not match or int(match.group(1)) < 1 or count <= 0:
            raise ConfigurationError(
                f'{where}: rate limit {text!r} is not understood; write requests per window of more than '
                f'zero, e.g. "600/min" or "10/5s"')
        unit = 60.0 if match.group(3).startswith("m") else 1.0
        return cls(int(match.group(1)), count * unit)

    def __str__(self) -> str:
        return f"{self.requests}/{self.window_seconds:g}s"


class Pacer:
    """The rate budget of one connection, learned from its responses."""

    def __init__(self, budget: Optional[RateBudget] = None, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._permits: Optional[int] = None  # requests the window has left, less those in flight
        self._closed_until = 0.0  # no request before this moment (a 429, an exhausted window)
        self._probing = False  # one request may ask whether a window of unknown end has reset
        self._reset_seen: Optional[float] = None  # the last moment the server said a window ends
        self._window_seconds: Optional[float] = None  # configured or learned from two resets
        self._window: Optional[tuple[MovingWindowRateLimiter, RateBudget]] = None
        self.limit: Optional[int] = None
        self.waited_seconds = 0.0
        self.sent = 0
        self.refused = 0
        if budget is not None:
            self._use(budget)

    @property
    def budget(self) -> Optional[RateBudget]:
        """The connection's requests per window, as far as they are known."""
        if self._window is not None:
            return self._window[1]
        if self.limit is not None and self._window_seconds is not None:
            return RateBudget(self.limit, self._window_seconds)
        return None

    def before_request(self) -> None:
        """Wait until the connection's budget allows one more request."""
        while True:
            wait = self._admit()
            if wait <= 0:
                return
            if cancellation.cancelled():
                raise cancellation.Cancelled("the walk ended while its request waited for the rate budget")
            started = self._clock()
            cancellation.sleep(min(wait, 1.0))
            self.waited_seconds += self._clock() - started

    def after_response(self, status: int, headers: Any) -> None:
        """Learn from a response (or note a request that got none: ``status`` 0)."""
        now = self._clock()
        limit, remaining = _int(headers.get("X-RateLimit-Limit")), _int(headers.get("X-RateLimit-Remaining"))
        reset = _seconds_until(_float(headers.get("X-RateLimit-Reset")))
        retry_after = _float(headers.get("Retry-After")) if status == 429 else None
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._probing = False
            if limit is not None and limit > 0:
                self.limit = limit
            if status == 429:
                self.refused += 1
                wait = retry_after if retry_after is not None else reset
                self._close_until(now + (wait if wait is not None else 1.0))
                self._permits = 0
                return
            if remaining is not None:
                self._permits = remaining - self._in_flight
                if remaining == 0 and reset is not None:
                    self._close_until(now + reset)
                elif remaining == 0 and self._reset_seen is not None and self._window_seconds:
                    passed = math.ceil((now - self._reset_seen) / self._window_seconds)
                    self._closed_until = max(self._closed_until, self._reset_seen + passed * self._window_seconds)
            elif status:
                self._permits = None
                if self._window is None and self.budget is not None:
                    self._use(self.budget)  # no Remaining to go by: a moving window of what is known

    def _admit(self) -> float:
        """Take a turn (0) or say how long to wait before asking again."""
        now = self._clock()
        with self._lock:
            if now < self._closed_until:
                return self._closed_until - now
            if self._permits is not None and self._permits <= 0:
                if self._probing or self._in_flight:
                    return 0.05  # a request in flight will tell whether the window reset
                self._probing = True  # ask once: the answer carries Remaining or Retry-After
            elif self._window is not None and self._permits is None:
                limiter, budget = self._window
                item = _window_item(budget)
                if not limiter.hit(item, "requests"):
                    reset_at, _ = limiter.get_window_stats(item, "requests")
                    return max(0.01, reset_at - time.time())
            if self._permits is not None:
                self._permits -= 1
            self._in_flight += 1
            self.sent += 1
            return 0.0

    def _close_until(self, moment: float) -> None:
        """No request before ``moment``, when a window the server named resets (at most
        ``MAX_WAIT_SECONDS`` ahead: a longer wait is the retry budget's to give up on)."""
        moment = min(moment, self._clock() + MAX_WAIT_SECONDS)
        self._closed_until = max(self._closed_until, moment)
        last, self._reset_seen = self._reset_seen, moment
        if last is not None and moment - last > 1.5:  # not the same reset told twice (whole seconds)
            gap = moment - last
            if self._window_seconds is None or gap < self._window_seconds - 0.5:
                self._window_seconds = float(round(gap))

    def _use(self, budget: RateBudget) -> None:
        self._window = (MovingWindowRateLimiter(MemoryStorage()), budget)
        self.limit, self._window_seconds = budget.requests, budget.window_seconds


# the longest one wait for the rate budget, like RetryPolicy.max_retry_after: a server asking
# for an hour gets asked again, and the request's retry budget decides when to give up
MAX_WAIT_SECONDS = 120.0
_EPOCH_SECONDS = 1e9  # an X-RateLimit-Reset this large is a moment (Unix time), not a delay


def _seconds_until(reset: Optional[float]) -> Optional[float]:
    if reset is None or reset < _EPOCH_SECONDS:
        return reset
    return max(reset - time.time(), 0.0)


def _window_item(budget: RateBudget) -> Any:
    return RateLimitItemPerSecond(budget.requests, max(1, math.ceil(budget.window_seconds)))


def _int(value: Any) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> Optional[float]:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
