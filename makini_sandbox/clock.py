"""The sandbox clock and the timestamp format of the contract.

Sandbox time = wall clock + an offset that only grows (`advance_clock`), so
tests can expire cursors or roll rate-limit windows without sleeping. Time is
kept as integer milliseconds since the epoch: the contract's precision, and an
exact, cheap sort key for the keyset index.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

DAY_MS = 86_400_000


_DAY_CACHE: dict[int, str] = {}


def _day(day: int) -> str:
    # Formatting dominates data generation; days repeat a lot, so cache them.
    s = _DAY_CACHE.get(day)
    if s is None:
        t = time.gmtime(day * 86_400)
        s = _DAY_CACHE[day] = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
    return s


def fmt_ms(ms: int) -> str:
    """Milliseconds since the epoch -> '2026-03-01T12:00:00.123Z'."""
    day, rem = divmod(ms, DAY_MS)
    sec, milli = divmod(rem, 1000)
    h, sec = divmod(sec, 3600)
    m, sec = divmod(sec, 60)
    return f"{_day(day)}T{h:02d}:{m:02d}:{sec:02d}.{milli:03d}Z"


def fmt_date(ms: int) -> str:
    """Milliseconds since the epoch -> '2026-03-01' (UTC calendar date)."""
    return _day(ms // DAY_MS)


def parse_iso_ms(text: str) -> int:
    """Parse an ISO 8601 timestamp to the first whole millisecond at or after it.

    Rounding up keeps `modified_after` inclusive and exact: a record at
    12:00:00.123 matches `modified_after=12:00:00.123` but not `...123500`.
    A naive timestamp is taken as UTC; a bare date means its midnight UTC.
    Raises ValueError when unparsable.
    """
    text = text.strip()
    if not text or len(text) > 64:
        raise ValueError("empty or overlong timestamp")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return -(-micros // 1000)


class SandboxClock:
    """Non-decreasing millisecond clock: wall time plus an advanceable offset."""

    def __init__(self) -> None:
        self._offset_ms = 0
        self._last_ms = 0
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            now = int(time.time() * 1000) + self._offset_ms
            if now < self._last_ms:  # the wall clock stepped back; never go backwards
                now = self._last_ms
            self._last_ms = now
            return now

    def tick_ms(self, floor_ms: int) -> int:
        """A time strictly after `floor_ms` (and not before now).

        Mutations use it so that every mutated record sorts after every key
        that existed before, hence after any cursor already handed out.
        """
        with self._lock:
            now = max(int(time.time() * 1000) + self._offset_ms, self._last_ms, floor_ms + 1)
            self._last_ms = now
            return now

    def advance(self, seconds: float) -> int:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset_ms += int(round(seconds * 1000))
        return self.now_ms()

    @property
    def offset_ms(self) -> int:
        return self._offset_ms
