"""The sandbox's world: connections, their stores, settings and counters.

Everything the HTTP layer reads or the control API changes lives here, behind
plain methods, so both can be exercised without sockets.
"""
from __future__ import annotations

import gc
import hashlib
import logging
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import orjson

from .clock import DAY_MS, SandboxClock, fmt_ms
from .cursor import CursorCodec
from .data import SYSTEMS, ConnectionData, derive_seed
from .entities import ENTITIES, entity_size, resolve_sizes
from .faults import FaultInjector, RateLimiter
from .latency import Latency
from .shapes import Shape, ShapeRenderer, parse_shape, resolve_shapes
from .store import EntityStore
from .visibility import SYNC_STATUS_ANSWERS, HeldChange, Visibility
from .webhooks import EVENT_TYPES, WebhookDispatcher

log = logging.getLogger(__name__)

CONNECTION_STATUSES = ("active", "offline", "reauthorization_required")


class ControlError(ValueError):
    """A control-API call named something that does not exist or is invalid."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Connection:
    index: int
    id: str
    token: str
    system: str
    data: ConnectionData
    stores: dict[str, EntityStore]
    status: str = "active"
    total_count: bool = True
    last_change_ms: int = 0
    mutation_rngs: dict[str, random.Random] = field(default_factory=dict)
    shape: Shape = field(default_factory=lambda: parse_shape("default"))
    visibility: Visibility = field(default_factory=lambda: Visibility(0))

    def public(self) -> dict:
        out = {"id": self.id, "token": self.token, "system": self.system}
        if not self.shape.is_default:  # the default connection's description is unchanged
            out["shape"] = self.shape.name
            out["entities"] = list(self.stores)
        return out


class RequestCounter:
    """Counts of API requests served (the control API is not counted).

    `snapshot()` gives:
    - `total`, and `by_status` (status code, or "dropped" / "cut" for those faults);
    - `by_connection`: connection id -> endpoint or entity -> requests, whatever
      their answer ("_unauthenticated" for requests without a valid token);
    - `by_connection_status`: connection id -> status (as in `by_status`) -> requests;
    - `admission`: connection id -> {"admitted", "refused"}: the rate limiter's
      verdicts. `admitted` requests used budget (every answer but a 429),
      `refused` ones got 429 RATE_LIMIT_EXCEEDED from the limiter. Injected
      faults (429, 500, 503, dropped) are answered before the limiter and are in
      neither, so without injected faults `admitted` is the connection's
      non-429 answers and `refused` its 429s. A bound on admitted requests per
      window is what a client's rate limiting must keep.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.by_connection: dict[str, Counter] = defaultdict(Counter)
        self.by_status: Counter = Counter()
        self.by_connection_status: dict[str, Counter] = defaultdict(Counter)
        self.admission: dict[str, dict[str, int]] = {}

    def record(self, connection_id: str, what: str, status: str, verdict: str | None = None) -> None:
        """One request; `verdict` is the rate limiter's ("admitted" or "refused"), None when
        the request never reached it."""
        with self._lock:
            self.total += 1
            self.by_connection[connection_id][what] += 1
            self.by_status[status] += 1
            self.by_connection_status[connection_id][status] += 1
            if verdict is not None:
                counts = self.admission.get(connection_id)
                if counts is None:
                    counts = self.admission[connection_id] = {"admitted": 0, "refused": 0}
                counts[verdict] += 1

    def snapshot(self, reset: bool = False) -> dict:
        with self._lock:
            out = {"total": self.total,
                   "by_connection": {c: dict(v) for c, v in self.by_connection.items()},
                   "by_status": dict(self.by_status),
                   "by_connection_status": {c: dict(v) for c, v in self.by_connection_status.items()},
                   "admission": {c: dict(v) for c, v in self.admission.items()}}
            if reset:
                self.reset()
            return out


class SandboxState:
    def __init__(self, seed: int = 7, sizes: dict[str, int] | None = None, connections: int = 2,
                 rate_limit_per_minute: int = 10_000, shapes: str | list[str] | None = None,
                 rate_window_seconds: float = 60.0, latency_ms: float = 0.0) -> None:
        """`rate_limit_per_minute`: requests per connection per window (per minute with the
        default `rate_window_seconds`); `latency_ms`: the delay of every API response."""
        if connections < 1:
            raise ValueError("connections must be >= 1")
        self.seed = seed
        self.sizes = resolve_sizes(sizes)
        self.n_connections = connections
        self.shapes = resolve_shapes(shapes, connections)
        self.clock = SandboxClock()
        self.started_ms = self.clock.now_ms()
        # Initial data is anchored to the start day, so a rerun the same day is identical.
        self.anchor_ms = self.started_ms // DAY_MS * DAY_MS
        self.cursors = CursorCodec(f"{seed}".encode())
        self.faults = FaultInjector()
        self.limiter = RateLimiter(rate_limit_per_minute, rate_window_seconds)
        self.rate_reset_header = True  # X-RateLimit-Reset, a sandbox extra (api.rate_limit_headers)
        self.latency = Latency(latency_ms)
        self.counter = RequestCounter()
        self.webhooks = WebhookDispatcher()
        self.connections: list[Connection] = []
        self.reset_data()

    # -- construction -------------------------------------------------------------
    def reset_data(self) -> None:
        """(Re)generate every connection's data from the seed; statuses return to active."""
        t0 = time.perf_counter()
        gc_was_enabled = gc.isenabled()
        gc.disable()  # millions of short-lived dicts: collection passes would dominate
        try:
            taken: set[str] = set()
            self.connections = [self._build_connection(i, taken) for i in range(self.n_connections)]
        finally:
            if gc_was_enabled:
                gc.enable()
        self.by_token = {c.token: c for c in self.connections}
        self.by_id = {c.id: c for c in self.connections}
        log.info("sandbox data generated in %.2fs: %d connection(s), sizes %s",
                 time.perf_counter() - t0, self.n_connections, self.sizes)

    def _identity(self, i: int, taken: set[str]) -> tuple[str, str]:
        """Connection `i`'s id and token, from a hash of (seed, i). Ids have 32 bits, so a
        large fleet can draw one twice (about 1 in 10,000 seeds at 1,000 connections): the
        later connection then salts its hash until both are new, and every other
        connection keeps its usual id."""
        salt = 0
        while True:
            text = f"makini-sandbox:{self.seed}:{i}" + (f":{salt}" if salt else "")
            h = hashlib.sha256(text.encode()).hexdigest()
            conn_id, token = f"conn_{h[:8]}", f"mk_live_{h[8:40]}"
            if conn_id not in taken and token not in taken:
                taken.update((conn_id, token))
                return conn_id, token
            salt += 1

    def _build_connection(self, i: int, taken: set[str]) -> Connection:
        conn_id, token = self._identity(i, taken)
        data = ConnectionData(self.seed, i, self.sizes, self.anchor_ms)
        shape = self.shapes[i]
        render = ShapeRenderer(shape, self.seed, i, self.anchor_ms) if shape.renders else None
        entities = ENTITIES + shape.custom_entities
        # Build referenced entities first only for readability; generation is order-independent.
        stores = {e: EntityStore(e, data.initial(e, entity_size(self.sizes, e)), names=shape.names, render=render)
                  for e in entities}
        return Connection(
            index=i, id=conn_id, token=token,
            system=SYSTEMS[i % len(SYSTEMS)], data=data, stores=stores,
            # The last of three or more connections models a system that cannot count.
            total_count=not (self.n_connections >= 3 and i == self.n_connections - 1),
            last_change_ms=self.anchor_ms,
            visibility=Visibility(self.anchor_ms),
            mutation_rngs={e: random.Random(derive_seed(self.seed, i, e, "mutations")) for e in entities},
            shape=shape,
        )

    def info(self) -> dict:
        out = {"seed": self.seed, "sizes": self.sizes,
               "connections": [c.public() for c in self.connections],
               "now": fmt_ms(self.clock.now_ms()),
               "rate_limit": self.limiter.describe(), "latency": self.latency.describe()}
        if any(not s.is_default for s in self.shapes):
            out["shapes"] = [s.name for s in self.shapes]
        return out

    # -- lookups ------------------------------------------------------------------
    def connection(self, connection_id: str) -> Connection:
        try:
            return self.by_id[connection_id]
        except KeyError:
            raise ControlError("NOT_FOUND", f"unknown connection {connection_id!r}") from None

    def store(self, connection_id: str, entity: str) -> EntityStore:
        conn = self.connection(connection_id)
        if entity not in conn.stores:
            raise ControlError("NOT_FOUND", f"unknown entity {entity!r} for connection {connection_id}; "
                                            f"known: {list(conn.stores)}")
        return conn.stores[entity]

    # -- control operations -------------------------------------------------------
    def mutate(self, connection_id: str, entity: str, *, update: float = 0.0, insert: int = 0,
               soft_delete: float = 0.0, hard_delete: float = 0.0, ids: list[str] | None = None,
               seed: int | None = None, hold: bool = False) -> dict:
        """Apply a batch of changes atomically with one sandbox timestamp.

        The population is the named `ids` (any existing record) or else every
        live record; fractions pick disjoint random subsets of it (hard delete,
        then soft delete, then update; a non-zero fraction picks at least one).

        Each change queues its webhook (when configured) in that same order,
        under the store lock, carrying the record exactly as stored and listed.

        A shaped connection's records change in canonical form and are served
        re-rendered, so they keep the shape. A record put through `put_records`
        has no canonical form: an update only moves its updated-at field (and a
        soft delete sets its deleted-at field), under the deployment's names.

        `hold`: the changes are made now (their updated_at is now) but stay
        invisible, webhooks too, until the next `makini_sync` (visibility.py).
        """
        conn = self.connection(connection_id)
        store = self.store(connection_id, entity)
        for name, frac in (("update", update), ("soft_delete", soft_delete), ("hard_delete", hard_delete)):
            if not 0.0 <= frac <= 1.0:
                raise ControlError("INVALID_PARAMETER", f"{name} must be a fraction between 0 and 1")
        if insert < 0:
            raise ControlError("INVALID_PARAMETER", "insert must be >= 0")
        rng = random.Random(seed) if seed is not None else conn.mutation_rngs[entity]
        out: dict[str, list[str]] = {"updated": [], "inserted": [], "soft_deleted": [], "hard_deleted": []}
        with store.lock:
            if ids is not None:
                missing = [i for i in ids if i not in store]
                if missing:
                    raise ControlError("NOT_FOUND", f"no {entity} with ids {missing[:5]}")
                population = list(dict.fromkeys(ids))
            else:
                population = store.ids(live_only=True)
            rng.shuffle(population)
            now = self.clock.tick_ms(store.max_ms)
            pos = 0
            for key, frac in (("hard_deleted", hard_delete), ("soft_deleted", soft_delete), ("updated", update)):
                n = min(len(population) - pos, max(1, round(frac * len(population))) if frac > 0 else 0)
                out[key] = sorted(population[pos:pos + n])
                pos += n
            apply = self._mutation(conn, entity, store, out, insert, rng, now)
            if hold:
                conn.visibility.hold(HeldChange(now, apply))
                out["held"] = True
            else:
                apply()
        return out

    def _mutation(self, conn: Connection, entity: str, store: EntityStore, out: dict, insert: int,
                  rng: random.Random, now: int):
        """The changes `out` names, as one call that applies them at `now` and queues their webhooks."""
        now_iso = fmt_ms(now)

        def apply() -> None:
            with store.lock:
                events: list[tuple[str, dict]] = []
                hook = self._record_hook(events, entity, store)
                names = store.names
                for key in ("hard_deleted", "soft_deleted", "updated"):
                    # a held change can outlive its record, or be overtaken by a newer visible one
                    out[key] = [rid for rid in out[key] if rid in store and store.updated_ms(rid) < now]
                for rid in out["hard_deleted"]:
                    store.remove(rid)
                    hook("record.deleted", rid, {names.id: rid, names.updated_at: now_iso, names.deleted_at: now_iso})
                for rid in out["soft_deleted"]:
                    rec = store.canonical(rid)
                    if rec is not None:
                        rec["deleted_at"] = rec["updated_at"] = now_iso
                        store.put(rec)
                    else:
                        rec = store.get(rid)
                        rec[names.deleted_at] = rec[names.updated_at] = now_iso
                        store.put_served(rec)
                    hook("record.updated", rid)
                for rid in out["updated"]:
                    rec = store.canonical(rid)
                    if rec is not None:
                        conn.data.update(entity, rec, rng, now)
                        rec["updated_at"] = now_iso
                        store.put(rec)
                    else:
                        rec = store.get(rid)
                        rec[names.updated_at] = now_iso
                        store.put_served(rec)
                    hook("record.updated", rid)
                out["inserted"] = []
                for _ in range(insert):
                    rec = conn.data.make(entity, now, now)
                    store.put(rec)
                    out["inserted"].append(rec["id"])
                    hook("record.created", rec["id"])
                if any(out.values()):
                    conn.last_change_ms = max(conn.last_change_ms, now)
                self.webhooks.emit_many(conn.id, events, now)  # still under the lock: store order = event order
        return apply

    def records(self, connection_id: str, entity: str) -> list[bytes]:
        """The records of one connection and entity exactly as the list endpoint serves
        them (their JSON), in list order (updated_at, id)."""
        return self.store(connection_id, entity).raws()

    def put_records(self, connection_id: str, entity: str, records: list, replace: bool = False,
                    hold: bool = False) -> dict:
        """Put records exactly as given (served byte for byte, in the connection's field
        names); `replace` first removes every other record of the connection and entity.

        All records are validated before any is stored (an invalid one changes nothing).
        A put counts as a change the source system made: sync-status moves
        `last_successful_sync_at` to now, so the records count as visible. With
        webhooks on, each put queues `record.created` (new id) or `record.updated`.
        `hold`: the records stay invisible, webhooks too, until the next
        `makini_sync`, which publishes them with the updated-at they carry
        (visibility.py); `replace` cannot be held.
        """
        from .store import served_rec

        conn = self.connection(connection_id)
        store = self.store(connection_id, entity)
        if not isinstance(records, list):
            raise ControlError("INVALID_PARAMETER", "records must be a JSON list of record objects")
        if hold and replace:
            raise ControlError("INVALID_PARAMETER", "replace cannot be held; put the records with hold alone")
        keys = []
        for i, record in enumerate(records):
            try:
                keys.append(served_rec(record, store.names).key)
            except ValueError as exc:
                raise ControlError("INVALID_PARAMETER", f"records[{i}]: {exc}") from None
        ids = [rid for _, rid in keys]
        if len(set(ids)) != len(ids):
            raise ControlError("INVALID_PARAMETER", "records repeat an id; give each record once")
        out = {"created": [], "replaced": [], "removed": []}

        def apply() -> None:
            with store.lock:
                events: list[tuple[str, dict]] = []
                hook = self._record_hook(events, entity, store)
                for rid, record in zip(ids, records):
                    new = store.put_served(record)
                    out["created" if new else "replaced"].append(rid)
                    hook("record.created" if new else "record.updated", rid)
                now = self.clock.now_ms()
                conn.last_change_ms = max(conn.last_change_ms, now)
                self.webhooks.emit_many(conn.id, events, now)

        with store.lock:
            if replace:
                keep = set(ids)
                out["removed"] = [rid for rid in store.ids(live_only=False) if rid not in keep]
                for rid in out["removed"]:
                    store.remove(rid)
            if hold and records:
                conn.visibility.hold(HeldChange(min(ms for ms, _ in keys), apply))
                out["held"] = ids
            else:
                apply()
        out["count"] = len(store)
        return out

    def makini_sync(self, connection_id: str) -> dict:
        """Makini's scheduled sync of one connection: every held change becomes visible."""
        conn = self.connection(connection_id)
        published = conn.visibility.publish(self.clock.now_ms())
        return {"id": conn.id, "published": published, "sync_status": self.sync_status(connection_id)}

    def sync_status(self, connection_id: str) -> dict:
        """What `GET /api/v1/sync-status` answers for the connection."""
        conn = self.connection(connection_id)
        failed = f"connection is {conn.status}" if conn.status != "active" else None
        return conn.visibility.status(conn.last_change_ms, failed)

    def set_sync_status_answer(self, connection_id: str, answer: str) -> None:
        """How `/sync-status` answers: with the bound (the contract), without it, or with a 500."""
        if answer not in SYNC_STATUS_ANSWERS:
            raise ControlError("INVALID_PARAMETER", f"answer must be one of {SYNC_STATUS_ANSWERS}")
        self.connection(connection_id).visibility.answer = answer

    def _record_hook(self, events: list, entity: str, store: EntityStore):
        """hook(type, rid[, record]): note one record event (the record as now stored)
        in `events`; a no-op when webhooks are off."""
        if not self.webhooks.enabled:
            return lambda *_: None

        def hook(event_type: str, rid: str, record: dict | None = None) -> None:
            rec = record if record is not None else orjson.Fragment(store.raw(rid))
            events.append((event_type, {"entity": entity, "record": rec}))
        return hook

    def set_status(self, connection_id: str, status: str) -> None:
        """Change a connection's status; a real change emits `connection.status_changed`
        (and `connection.reauthorization_required` when that is the new status)."""
        if status not in CONNECTION_STATUSES:
            raise ControlError("INVALID_PARAMETER", f"status must be one of {CONNECTION_STATUSES}")
        conn = self.connection(connection_id)
        previous, conn.status = conn.status, status
        if previous == status:
            return
        events = [("connection.status_changed", {"status": status, "previous_status": previous})]
        if status == "reauthorization_required":
            events.append(("connection.reauthorization_required", {
                "status": status,
                "error": f"connection {conn.id} ({conn.system}) needs to be reauthorized; reconnect it in Makini"}))
        self.webhooks.emit_many(conn.id, events, self.clock.now_ms())

    def emit_event(self, connection_id: str, event_type: str, data: dict | None = None) -> dict:
        """Emit one event as given (lifecycle events such as `sync.completed`, or a
        hand-made record event); `id` is None when webhooks are off."""
        conn = self.connection(connection_id)
        if event_type not in EVENT_TYPES:
            raise ControlError("INVALID_PARAMETER", f"unknown event type {event_type!r}; known: {list(EVENT_TYPES)}")
        if data is not None and not isinstance(data, dict):
            raise ControlError("INVALID_PARAMETER", "data must be a JSON object")
        return {"id": self.webhooks.emit(conn.id, event_type, data or {}, self.clock.now_ms()), "type": event_type}

    def close(self) -> None:
        """Stop background work (webhook delivery)."""
        self.webhooks.close()

    def set_rate_limit(self, per_window: int, window_seconds: float = 60.0,
                       connection_id: str | None = None, reset_header: bool | None = None) -> dict:
        """`per_window` requests per `window_seconds`, for every connection (dropping
        per-connection limits) or for one; returns the limits now in force."""
        if connection_id is not None:
            self.connection(connection_id)
        try:
            self.limiter.set_limit(per_window, window_seconds, connection_id)
        except ValueError as exc:
            raise ControlError("INVALID_PARAMETER", str(exc)) from None
        if reset_header is not None:
            self.rate_reset_header = bool(reset_header)
        return self.limiter.describe()

    def set_latency(self, latency_ms: float, connection_id: str | None = None) -> dict:
        """The delay of every API response, for every connection (dropping per-connection
        values) or for one; returns the latencies now in force."""
        if connection_id is not None:
            self.connection(connection_id)
        try:
            self.latency.set(latency_ms, connection_id)
        except ValueError as exc:
            raise ControlError("INVALID_PARAMETER", str(exc)) from None
        return self.latency.describe()

    def set_total_count(self, connection_id: str, enabled: bool) -> None:
        self.connection(connection_id).total_count = bool(enabled)
