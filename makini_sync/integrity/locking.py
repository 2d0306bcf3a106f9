"""The writers' lock of one destination dataset, shared by every host and process.

The version fence reads stored versions and then loads; two writers
interleaving those steps could let a stale version in, and two loads at once
race on dlt's schema changes and merges. So every writer (the sync, the
webhook processor, reconcile) takes two kinds of lock, always in this order:

- **connection locks**, one per Makini connection it writes, from reading
  stored versions until its last load is tidied. Workers with disjoint
  connections never wait on each other here, so they fetch in parallel.
- **the load lock**, one per dataset, around each load and what follows it
  (line-item pruning, the tombstone sweep, a full refresh's deletes): dlt's
  schema changes and merges run one at a time per dataset.

Connection locks are taken in sorted order and always before the load lock,
so no two writers can wait on each other in a circle. A lock this thread
already holds (reconcile around its own sync, say) is taken again for free.
Where the lock lives depends on the destination (``lock_backends.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import dlt

from makini_sync.destinations.profiles import Profile
from makini_sync.integrity.lock_backends import (
    DEFAULT_LEASE_SECONDS, FileLocks, LeaseLocks, LockBackend, MongoLeaseStore, MySqlLocks, PostgresLocks,
    SqlLeaseStore,
)

logger = logging.getLogger(__name__)

LOAD_KEY = "load"
LEASE_ENV = "MAKINI_LOCK_LEASE_SECONDS"

# (scope, key) -> [the backend that took it, times taken], per thread: a nested take is free
_held = threading.local()


def _held_locks() -> dict:
    if not hasattr(_held, "locks"):
        _held.locks = {}
    return _held.locks


def holder_name(label: str) -> str:
    """How a waiter sees us: what we are, our process and host."""
    return f"makini-sync {label} pid {os.getpid()} on {os.uname().nodename}"


class WriterLocks:
    """Connection locks and the load lock of ``profile``'s ``dataset``.

    ``waited``: seconds spent waiting, in all. Use as a context manager: the
    backend's session (and with it every lock) ends on exit.
    """

    def __init__(self, profile: Profile, dataset: str, holder: str, pipeline: Optional[dlt.Pipeline] = None) -> None:
        self.profile, self.dataset, self.holder = profile, dataset, holder
        self.scope = f"{profile.name}.{dataset}"
        self._pipeline = pipeline
        self._backend: Optional[LockBackend] = None
        self.waited = 0.0

    def __enter__(self) -> "WriterLocks":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    @property
    def backend(self) -> LockBackend:
        if self._backend is None:
            self._backend = open_backend(self.profile, self.dataset, self.holder, self._pipeline)
        return self._backend

    @contextlib.contextmanager
    def connections(self, connection_ids: Iterable[str]) -> Iterator[None]:
        keys = [f"connection:{c}" for c in sorted(set(connection_ids))]
        taken: list[str] = []
        try:
            for key in keys:
                self._take(key)
                taken.append(key)
            yield
        finally:
            for key in reversed(taken):
                self._give_back(key)

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        self._take(LOAD_KEY)
        try:
            yield
        finally:
            self._give_back(LOAD_KEY)

    def _canonical(self, key: str) -> str:
        """A file lock is one lock whatever the name (DuckDB has one writer anyway)."""
        return "database" if isinstance(self.backend, FileLocks) else key

    def _take(self, key: str) -> None:
        key = self._canonical(key)
        held = _held_locks()
        if (self.scope, key) in held:  # this thread holds it already, through this object or another
            held[(self.scope, key)][1] += 1
            return
        backend = self.backend
        if not backend.try_acquire(key):
            started = time.monotonic()
            lease = f"; a holder that died releases it within {backend.lease_seconds:.0f} s" \
                if backend.lease_seconds else ""
            logger.info("waiting for the writer lock %s of %s, held by %s%s", key, self.scope,
                        backend.holder_of(key), lease)
            backend.acquire(key)
            self.waited += time.monotonic() - started
        held[(self.scope, key)] = [backend, 1]

    def _give_back(self, key: str) -> None:
        key = self._canonical(key)
        held = _held_locks()
        entry = held[(self.scope, key)]
        entry[1] -= 1
        if entry[1] == 0:
            del held[(self.scope, key)]
            entry[0].release(key)  # the backend that took it


def lease_seconds() -> float:
    value = os.environ.get(LEASE_ENV)
    if value is None:
        return DEFAULT_LEASE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if seconds <= 0:
        from sources.makini.errors import ConfigurationError

        raise ConfigurationError(f"{LEASE_ENV} must be a number of seconds above 0, not {value!r}")
    return seconds


def open_backend(profile: Profile, dataset: str, holder: str, pipeline: Optional[dlt.Pipeline]) -> LockBackend:
    kind = profile.destination.rsplit(".", 1)[-1]
    if profile.documents or "mongodb" in profile.destination:
        from makini_sync.destinations.mongodb.connection import get_client

        uri = str(dlt.secrets[f"destination.{profile.name}.credentials"])
        database = get_client(uri).get_default_database(default=dataset)
        return LeaseLocks(MongoLeaseStore(database), holder, lease_seconds())
    if kind == "duckdb":
        return FileLocks(duckdb_lock_path(profile, dataset))
    if pipeline is None:
        from makini_sync.destinations.profiles import make_pipeline

        pipeline = make_pipeline(profile, f"makini_locks__{re.sub(r'[^a-z0-9_]', '_', profile.name.lower())}", dataset)
    open_client = pipeline.sql_client
    if kind == "postgres":
        return PostgresLocks(open_client, dataset, holder)
    if kind == "sqlalchemy":
        return MySqlLocks(open_client, dataset, holder)
    return LeaseLocks(SqlLeaseStore(open_client), holder, lease_seconds())


def duckdb_lock_path(profile: Profile, dataset: str) -> Path:
    """Beside the DuckDB file, so every process that opens it finds the same lock
    whatever its dlt data dir; under dlt's data dir for a database without a file."""
    path = profile.duckdb_file()
    if path is not None:
        return Path(path).resolve().with_name(Path(path).name + f".{dataset}.writer.lock")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{profile.name}.{dataset}")
    return Path(dlt.current.run_context().data_dir) / "locks" / f"{safe}.lock"
