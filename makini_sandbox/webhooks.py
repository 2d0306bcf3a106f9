"""Webhook delivery: what Makini pushes to a receiver, failure modes included.

The contract (`docs/makini-api.md`, Webhooks): POST a JSON event, Standard
Webhooks headers (`webhook-id` = the event id on every retry,
`webhook-timestamp` = when this attempt was signed, `webhook-signature` =
one `v1,<sig>` per configured secret), expect a 2xx within 10 s, otherwise
retry with exponential backoff from 30 s (30, 60, 120 s, ...) for up to 24 h
after the first attempt, then give up.

Time. Every delivery time (timeout, backoff, horizon, injected delays,
reorder hold, duplicate lag) is multiplied by `time_scale`, so a test with
`time_scale=0.001` sees the first retry after 30 ms and the horizon after
86.4 s. Event `created_at` and record timestamps are sandbox time (which
`advance_clock` moves); `webhook-timestamp` is the wall clock, because the
receiver checks it against its own clock (5-minute replay window) and an
advanced sandbox clock must not make every signature look stale.

Injection, reproducible from `seed`: every random choice is drawn from a
generator seeded by (seed, event sequence number) or (seed, window number),
never from shared state that thread timing could perturb. So the same
configuration and the same sequence of mutations give the same duplicated
events, the same release order and the same delays. Arrival order at the
receiver equals release order only with `workers=1` and `max_delay=0`;
several workers deliver concurrently, as a real sender does.
- `duplicate_rate`: that fraction of events is delivered once more after
  being acknowledged, up to 30 s (scaled) later, same `webhook-id`, re-signed.
- `reorder_window=N`: events are held until N are waiting (or the oldest has
  waited `reorder_hold`, or a flush), then released in shuffled order.
- `max_delay`: every attempt is postponed by a uniform random 0..max_delay s.

Delivery never runs on the caller's thread: `emit` serializes the event and
queues it; worker threads sign and POST through one persistent httpx client.
`configure` starts afresh: stats reset and undelivered events of the previous
configuration are dropped (an attempt already in flight completes unrecorded).
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from .clock import fmt_ms
from .data import derive_seed

log = logging.getLogger(__name__)

RECORD_EVENTS = ("record.created", "record.updated", "record.deleted")
LIFECYCLE_EVENTS = ("sync.completed", "sync.failed", "connection.status_changed",
                    "connection.reauthorization_required")
EVENT_TYPES = RECORD_EVENTS + LIFECYCLE_EVENTS

TIMEOUT_S = 10.0          # a 2xx must arrive within this
FIRST_RETRY_S = 30.0      # then 60, 120, ... (doubling)
HORIZON_S = 86_400.0      # no retry later than this after the first attempt
DUPLICATE_LAG_S = 30.0    # a duplicate follows its acknowledged original within this
MAX_WORKERS = 64
USER_AGENT = "MakiniSandbox-Webhooks/1.0"


@dataclass(frozen=True)
class WebhookSettings:
    """What `configure_webhooks` sets. Seconds are contract seconds, scaled by
    `time_scale`, except `timeout` (seconds per attempt, as given; default
    10 s x time_scale) which exists because a 10 ms budget at scale 0.001 is
    tighter than a receiver's fsync."""
    url: str = ""
    secrets: tuple[str, ...] = ()
    time_scale: float = 1.0
    duplicate_rate: float = 0.0
    reorder_window: int = 0
    max_delay: float = 0.0
    seed: int = 0
    enabled: bool = True
    workers: int = 4
    timeout: float | None = None
    reorder_hold: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "secrets", tuple(self.secrets))
        if not self.enabled:
            return
        if urlsplit(self.url).scheme not in ("http", "https") or not urlsplit(self.url).netloc:
            raise ValueError(f"webhook url must be an http(s) URL, got {self.url!r}")
        if not self.secrets:
            raise ValueError("at least one webhook secret (whsec_<base64>) is required")
        for i, secret in enumerate(self.secrets):
            if not isinstance(secret, str) or not secret.startswith("whsec_"):
                raise ValueError(f"webhook secret #{i} must be a string 'whsec_<base64 key>'")
        if not self.time_scale > 0:
            raise ValueError("time_scale must be > 0")
        if not 0.0 <= self.duplicate_rate <= 1.0:
            raise ValueError("duplicate_rate must be a fraction between 0 and 1")
        if self.reorder_window < 0 or self.max_delay < 0 or self.reorder_hold < 0:
            raise ValueError("reorder_window, max_delay and reorder_hold must be >= 0")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {MAX_WORKERS}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError("timeout must be > 0 seconds")

    @property
    def attempt_timeout(self) -> float:
        return self.timeout if self.timeout is not None else TIMEOUT_S * self.time_scale

    def describe(self) -> dict:
        """The settings without the secrets (only their count)."""
        out = asdict(self)
        out["secrets"] = len(self.secrets)
        out["attempt_timeout"] = self.attempt_timeout
        return out


def signers_for(secrets: tuple[str, ...]) -> list[Webhook]:
    signers = []
    for i, secret in enumerate(secrets):
        try:
            signers.append(Webhook(secret))
        except Exception:  # binascii.Error, EmptyWebhookSecretError...: never echo the secret
            raise ValueError(f"webhook secret #{i} is not a valid 'whsec_<base64 key>'") from None
    return signers


def sign_headers(signers: list[Webhook], event_id: str, payload: str, when: datetime) -> dict[str, str]:
    """Standard Webhooks headers for one attempt: one `v1,` entry per secret."""
    return {"webhook-id": event_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": " ".join(s.sign(event_id, when, payload) for s in signers)}


@dataclass(eq=False)
class _Event:
    seq: int
    id: str
    type: str
    body: bytes
    gen: int
    rng: random.Random          # this event's own stream: duplicate?, lag, delays
    duplicate: bool
    attempts: int = 0
    first_attempt: float | None = None


@dataclass(order=True)
class _Job:
    due: float
    order: int
    event: _Event = field(compare=False)
    is_duplicate: bool = field(compare=False, default=False)


class WebhookDispatcher:
    """Queue, scheduler and workers. One lock (a Condition) guards all state;
    the HTTP attempt runs outside it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._settings = WebhookSettings(enabled=False)
        self._signers: list[Webhook] = []
        self._gen = 0
        self._closed = False
        self._http: httpx.Client | None = None
        self._workers: list[threading.Thread] = []
        self._reset()

    def _reset(self) -> None:
        self._heap: list[_Job] = []
        self._order = itertools.count()
        self._window: list[_Event] = []
        self._window_since = 0.0
        self._windows_released = 0
        self._seq = 0
        self._stats: Counter = Counter()
        self._by_type: Counter = Counter()
        self._pending = 0
        self._pending_duplicates = 0
        self._in_flight = 0

    @property
    def enabled(self) -> bool:
        return self._settings.enabled and not self._closed

    # -- control ------------------------------------------------------------------
    def configure(self, settings: WebhookSettings) -> dict:
        signers = signers_for(settings.secrets) if settings.enabled else []
        with self._cond:
            if self._closed:
                raise RuntimeError("the webhook dispatcher is closed")
            self._gen += 1
            self._reset()
            self._settings, self._signers = settings, signers
            if settings.enabled:
                if self._http is None:
                    # trust_env=False: an HTTP(S)_PROXY in the environment must not capture loopback.
                    self._http = httpx.Client(trust_env=False, follow_redirects=False,
                                              limits=httpx.Limits(max_connections=MAX_WORKERS,
                                                                  max_keepalive_connections=MAX_WORKERS))
                self._workers = [w for w in self._workers if w.is_alive()]
                for i in range(settings.workers):
                    t = threading.Thread(target=self._work, args=(self._gen,), daemon=True,
                                         name=f"sandbox-webhooks-{self._gen}-{i}")
                    t.start()
                    self._workers.append(t)
            self._cond.notify_all()
        log.info("webhooks %s", "configured: %s" % settings.describe() if settings.enabled else "disabled")
        return settings.describe()

    def stats(self) -> dict:
        with self._cond:
            return self._stats_locked()

    def _stats_locked(self) -> dict:
        s = self._stats
        return {"enabled": self.enabled, "events": s["events"], "deliveries": s["deliveries"],
                "delivered": s["delivered"], "failed_attempts": s["failed_attempts"],
                "given_up": s["given_up"], "pending": self._pending, "duplicates_sent": s["duplicates_sent"],
                "pending_duplicates": self._pending_duplicates, "held": len(self._window),
                "in_flight": self._in_flight, "by_type": dict(self._by_type)}

    def flush(self, timeout: float = 30.0) -> dict:
        """Release any held window and wait until every event is acknowledged or
        given up and every scheduled duplicate is sent (or `timeout` passes)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            gen = self._gen
            while gen == self._gen and not self._closed:
                if self._window:
                    self._release_window()
                if not (self._pending or self._pending_duplicates):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.05))
            return self._stats_locked()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            workers, self._workers = self._workers, []
        for t in workers:
            t.join(timeout=1.0)
        if self._http is not None:
            self._http.close()

    # -- producing ----------------------------------------------------------------
    def emit(self, connection_id: str, event_type: str, data: dict, created_ms: int) -> str | None:
        """Queue one event; returns its id (None when webhooks are off). Cheap: no I/O."""
        ids = self.emit_many(connection_id, [(event_type, data)], created_ms)
        return ids[0] if ids else None

    def emit_many(self, connection_id: str, events: list[tuple[str, dict]], created_ms: int) -> list[str]:
        """Queue events in the given order (one lock hold, one wake-up for a whole
        mutation batch); `data` may hold `orjson.Fragment`s, records as stored.
        About 30 us per event; returns their ids ([] when webhooks are off)."""
        if not self.enabled or not events:
            return []
        created_at = fmt_ms(created_ms)
        bodies = []
        for event_type, data in events:
            event_id = "evt_" + os.urandom(12).hex()
            bodies.append((event_id, event_type, orjson.dumps({
                "id": event_id, "type": event_type, "created_at": created_at,
                "connection_id": connection_id, "data": data})))
        with self._cond:
            s = self._settings
            if not self.enabled:
                return []
            now = time.monotonic()
            for event_id, event_type, body in bodies:
                seq, self._seq = self._seq, self._seq + 1
                rng = random.Random(derive_seed(s.seed, "event", seq))
                ev = _Event(seq, event_id, event_type, body, self._gen, rng,
                            duplicate=rng.random() < s.duplicate_rate)
                self._stats["events"] += 1
                self._by_type[event_type] += 1
                self._pending += 1
                if s.reorder_window > 1:
                    if not self._window:
                        self._window_since = now
                    self._window.append(ev)
                    if len(self._window) >= s.reorder_window:
                        self._release_window()
                else:
                    self._schedule(ev, now)
            self._cond.notify_all()
        return [b[0] for b in bodies]

    def _release_window(self) -> None:
        batch, self._window = self._window, []
        random.Random(derive_seed(self._settings.seed, "window", self._windows_released)).shuffle(batch)
        self._windows_released += 1
        now = time.monotonic()
        for ev in batch:
            self._schedule(ev, now)
        self._cond.notify_all()

    def _schedule(self, ev: _Event, at: float, is_duplicate: bool = False) -> None:
        s = self._settings
        jitter = ev.rng.random() * s.max_delay * s.time_scale
        heapq.heappush(self._heap, _Job(at + jitter, next(self._order), ev, is_duplicate))

    # -- delivering ---------------------------------------------------------------
    def _next_job(self, gen: int) -> tuple | None:
        """Block until a job is due; returns it with the settings, signers and client
        of its configuration (read together), or None when this worker's configuration
        is gone."""
        with self._cond:
            while not self._closed and gen == self._gen:
                now = time.monotonic()
                s = self._settings
                hold_until = self._window_since + s.reorder_hold * s.time_scale if self._window else None
                if hold_until is not None and now >= hold_until:
                    self._release_window()
                    continue
                if self._heap and self._heap[0].due <= now:
                    self._in_flight += 1
                    return heapq.heappop(self._heap), s, self._signers, self._http
                wakes = [t for t in (self._heap[0].due if self._heap else None, hold_until) if t is not None]
                self._cond.wait(min(wakes) - now if wakes else None)
            return None

    def _work(self, gen: int) -> None:
        while (item := self._next_job(gen)) is not None:
            job, settings, signers, http = item
            started = time.monotonic()
            ok, detail = self._attempt(http, settings, signers, job.event)
            with self._cond:
                if job.event.gen != self._gen:
                    continue  # reconfigured meanwhile: this attempt belongs to no current count
                self._in_flight -= 1
                self._record(job, ok, detail, started, time.monotonic())
                self._cond.notify_all()

    @staticmethod
    def _attempt(http: httpx.Client, s: WebhookSettings, signers: list[Webhook], ev: _Event) -> tuple[bool, str]:
        headers = sign_headers(signers, ev.id, ev.body.decode(), datetime.now(timezone.utc))
        headers["content-type"] = "application/json"
        headers["user-agent"] = USER_AGENT
        timeout = s.attempt_timeout
        t0 = time.monotonic()
        try:
            resp = http.post(s.url, content=ev.body, headers=headers, timeout=timeout)
        except (httpx.HTTPError, RuntimeError) as exc:  # RuntimeError: client closed at shutdown
            return False, type(exc).__name__
        if time.monotonic() - t0 > timeout:
            return False, f"answered {resp.status_code} after the {timeout:g} s deadline"
        return 200 <= resp.status_code < 300, f"answered {resp.status_code}"

    def _record(self, job: _Job, ok: bool, detail: str, started: float, now: float) -> None:
        s, ev = self._settings, job.event
        self._stats["deliveries"] += 1
        if not ok:
            self._stats["failed_attempts"] += 1
        if job.is_duplicate:  # one extra attempt, never retried
            self._stats["duplicates_sent"] += 1
            self._pending_duplicates -= 1
            return
        ev.attempts += 1
        if ev.first_attempt is None:
            ev.first_attempt = started
        if ok:
            self._stats["delivered"] += 1
            self._pending -= 1
            if ev.duplicate:
                self._pending_duplicates += 1
                self._schedule(ev, now + ev.rng.random() * DUPLICATE_LAG_S * s.time_scale, is_duplicate=True)
            return
        retry_in = FIRST_RETRY_S * 2 ** (ev.attempts - 1) * s.time_scale
        if now + retry_in > ev.first_attempt + HORIZON_S * s.time_scale:
            self._stats["given_up"] += 1
            self._pending -= 1
            log.warning("webhook %s (%s) given up after %d attempts; last: %s",
                        ev.id, ev.type, ev.attempts, detail)
        else:
            log.debug("webhook %s attempt %d failed (%s); retry in %.3f s", ev.id, ev.attempts, detail, retry_in)
            self._schedule(ev, now + retry_in)
