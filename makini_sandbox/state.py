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
from .entities import ENTITIES, resolve_sizes
from .faults import FaultInjector, RateLimiter
from .store import EntityStore
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

    def public(self) -> dict:
        return {"id": self.id, "token": self.token, "system": self.system}


class RequestCounter:
    """Counts of API requests served (the control API is not counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.by_connection: dict[str, Counter] = defaultdict(Counter)
        self.by_status: Counter = Counter()

    def record(self, connection_id: str, what: str, status: str) -> None:
        with self._lock:
            self.total += 1
            self.by_connection[connection_id][what] += 1
            self.by_status[status] += 1

    def relabel(self, old: str, new: str) -> None:
        """Count one request recorded as ``old`` under ``new`` (a 200 whose body the cut fault stopped)."""
        with self._lock:
            self.by_status[old] -= 1
            self.by_status[new] += 1

    def snapshot(self, reset: bool = False) -> dict:
        with self._lock:
            out = {"total": self.total,
                   "by_connection": {c: dict(v) for c, v in self.by_connection.items()},
                   "by_status": dict(self.by_status)}
            if reset:
                self.reset()
            return out


class SandboxState:
    def __init__(self, seed: int = 7, sizes: dict[str, int] | None = None, connections: int = 2,
                 rate_limit_per_minute: int = 10_000) -> None:
        if connections < 1:
            raise ValueError("connections must be >= 1")
        self.seed = seed
        self.sizes = resolve_sizes(sizes)
        self.n_connections = connections
        self.clock = SandboxClock()
        self.started_ms = self.clock.now_ms()
        # Initial data is anchored to the start day, so a rerun the same day is identical.
        self.anchor_ms = self.started_ms // DAY_MS * DAY_MS
        self.cursors = CursorCodec(f"{seed}".encode())
        self.faults = FaultInjector()
        self.limiter = RateLimiter(rate_limit_per_minute)
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
            self.connections = [self._build_connection(i) for i in range(self.n_connections)]
        finally:
            if gc_was_enabled:
                gc.enable()
        self.by_token = {c.token: c for c in self.connections}
        self.by_id = {c.id: c for c in self.connections}
        log.info("sandbox data generated in %.2fs: %d connection(s), sizes %s",
                 time.perf_counter() - t0, self.n_connections, self.sizes)

    def _build_connection(self, i: int) -> Connection:
        h = hashlib.sha256(f"makini-sandbox:{self.seed}:{i}".encode()).hexdigest()
        data = ConnectionData(self.seed, i, self.sizes, self.anchor_ms)
        # Build referenced entities first only for readability; generation is order-independent.
        stores = {e: EntityStore(e, data.initial(e, self.sizes[e])) for e in ENTITIES}
        return Connection(
            index=i, id=f"conn_{h[:8]}", token=f"mk_live_{h[8:40]}",
            system=SYSTEMS[i % len(SYSTEMS)], data=data, stores=stores,
            # The last of three or more connections models a system that cannot count.
            total_count=not (self.n_connections >= 3 and i == self.n_connections - 1),
            last_change_ms=self.anchor_ms,
            mutation_rngs={e: random.Random(derive_seed(self.seed, i, e, "mutations")) for e in ENTITIES},
        )

    def info(self) -> dict:
        return {"seed": self.seed, "sizes": self.sizes,
                "connections": [c.public() for c in self.connections],
                "now": fmt_ms(self.clock.now_ms())}

    # -- lookups ------------------------------------------------------------------
    def connection(self, connection_id: str) -> Connection:
        try:
            return self.by_id[connection_id]
        except KeyError:
            raise ControlError("NOT_FOUND", f"unknown connection {connection_id!r}") from None

    def store(self, connection_id: str, entity: str) -> EntityStore:
        conn = self.connection(connection_id)
        if entity not in conn.stores:
            raise ControlError("NOT_FOUND", f"unknown entity {entity!r}; known: {list(ENTITIES)}")
        return conn.stores[entity]

    # -- control operations -------------------------------------------------------
    def mutate(self, connection_id: str, entity: str, *, update: float = 0.0, insert: int = 0,
               soft_delete: float = 0.0, hard_delete: float = 0.0, ids: list[str] | None = None,
               seed: int | None = None) -> dict:
        """Apply a batch of changes atomically with one sandbox timestamp.

        The population is the named `ids` (any existing record) or else every
        live record; fractions pick disjoint random subsets of it (hard delete,
        then soft delete, then update; a non-zero fraction picks at least one).

        Each change queues its webhook (when configured) in that same order,
        under the store lock, carrying the record exactly as stored and listed.
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
            now_iso = fmt_ms(now)
            pos = 0
            for key, frac in (("hard_deleted", hard_delete), ("soft_deleted", soft_delete), ("updated", update)):
                n = min(len(population) - pos, max(1, round(frac * len(population))) if frac > 0 else 0)
                out[key] = sorted(population[pos:pos + n])
                pos += n
            events: list[tuple[str, dict]] = []
            hook = self._record_hook(events, entity, store)
            for rid in out["hard_deleted"]:
                store.remove(rid)
                hook("record.deleted", rid, {"id": rid, "updated_at": now_iso, "deleted_at": now_iso})
            for rid in out["soft_deleted"]:
                rec = store.get(rid)
                rec["deleted_at"] = rec["updated_at"] = now_iso
                store.put(rec)
                hook("record.updated", rid)
            for rid in out["updated"]:
                rec = store.get(rid)
                conn.data.update(entity, rec, rng, now)
                rec["updated_at"] = now_iso
                store.put(rec)
                hook("record.updated", rid)
            for _ in range(insert):
                rec = conn.data.make(entity, now, now)
                store.put(rec)
                out["inserted"].append(rec["id"])
                hook("record.created", rec["id"])
            if any(out.values()):
                conn.last_change_ms = now
            self.webhooks.emit_many(conn.id, events, now)  # still under the lock: store order = event order
        return out

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

    def set_total_count(self, connection_id: str, enabled: bool) -> None:
        self.connection(connection_id).total_count = bool(enabled)
