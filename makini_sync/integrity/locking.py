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
import fcntl
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import dlt

from sources.makini.errors import ConfigurationError

from makini_sync.destinations.profiles import Profile, make_pipeline
from makini_sync.integrity.lock_backends import (
    DEFAULT_LEASE_SECONDS, FileLocks, LeaseLocks, LockBackend, MongoLeaseStore, MySqlLocks, PostgresLocks,
    SqlLeaseStore,
)

logger = logging.getLogger(__name__)

LOAD_KEY = "load"
LEASE_ENV = "MAKINI_LOCK_LEASE_SECONDS"

class DestinationUnreachable(RuntimeError):
    """The destination did not answer the first connection of the run."""


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else ""


@dataclass
class _Held:
    backend: LockBackend  # the one that took it, and gives it back
    times: int = 1


# (scope, key) -> _Held, per thread: a nested take of a held lock is free
_held = threading.local()


def _held_locks() -> dict:
    if not hasattr(_held, "locks"):
        _held.locks = {}
    return _held.locks


def holder_name(label: str) -> str:
    """How a waiter sees us: process and host first (PostgreSQL keeps 63 characters of
    it), a random part (two containers may share a host name and pid 1), what we are."""
    return f"pid {os.getpid()}@{os.uname().nodename} {uuid.uuid4().hex[:8]} makini-sync {label}"


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
        self._lock_dir: Optional[tempfile.TemporaryDirectory] = None
        self.waited = 0.0

    def __enter__(self) -> "WriterLocks":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._backend is not None:
            held = _held_locks()
            for key in [k for k, entry in held.items() if isinstance(entry, _Held) and entry.backend is self._backend]:
                del held[key]  # closing the backend ends them, whatever happened to the calls that took them
            self._backend.close()
            self._backend = None
        if self._lock_dir is not None:
            self._lock_dir.cleanup()
            self._lock_dir = None

    @property
    def backend(self) -> LockBackend:
        if self._backend is None:
            pipeline = self._pipeline
            if pipeline is None and not _file_or_lease(self.profile):
                # a pipeline only to open the lock session with dlt's credentials, kept out of dlt's data dir
                self._lock_dir = tempfile.TemporaryDirectory(prefix="makini-locks-")
                pipeline = make_pipeline(self.profile, "makini_locks", self.dataset,
                                         pipelines_dir=self._lock_dir.name)
            try:
                self._backend = open_backend(self.profile, self.dataset, self.holder, pipeline)
            except ConfigurationError:
                raise
            except Exception as exc:  # noqa: BLE001 - the first contact with the destination: say which and where
                raise DestinationUnreachable(
                    f"cannot reach destination {self.profile.name!r} ({self.profile.destination}) at "
                    f"{self.profile.location()}: {type(exc).__name__}: {_first_line(exc)}; check that it runs and "
                    f"DESTINATION__{self.profile.name.upper()}__CREDENTIALS") from None
        return self._backend

    @contextlib.contextmanager
    def connections(self, connection_ids: Iterable[str]) -> Iterator[None]:
        keys = [f"connection:{c}" for c in sorted(set(connection_ids))]
        self._refuse_out_of_order(keys)
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
            self.backend.check()  # the connections' locks and this one are still ours
            yield
        finally:
            self._give_back(LOAD_KEY)

    def _refuse_out_of_order(self, keys: list[str]) -> None:
        """Locks are taken in sorted order, connections before the load lock, or two
        writers can wait on each other for ever; a nested take that would break
        that is a bug in the caller, so it fails loudly instead."""
        held = {key for (scope, key) in _held_locks() if scope == self.scope}
        new = [k for k in keys if self._canonical(k) not in held]
        if new and (self._canonical(LOAD_KEY) in held or any(h > new[0] for h in held if h.startswith("connection:"))):
            raise RuntimeError(f"writer locks taken out of order on {self.scope}: {new[0]} after {sorted(held)}")

    def _canonical(self, key: str) -> str:
        """A file lock is one lock whatever the name (DuckDB has one writer anyway)."""
        return "database" if isinstance(self.backend, FileLocks) else key

    def _take(self, key: str) -> None:
        key = self._canonical(key)
        held = _held_locks()
        if (self.scope, key) in held:  # this thread holds it already, through this object or another
            held[(self.scope, key)].times += 1
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
        held[(self.scope, key)] = _Held(backend)

    def _give_back(self, key: str) -> None:
        key = self._canonical(key)
        held = _held_locks()
        entry = held.get((self.scope, key))
        if entry is None:
            return  # its backend was closed meanwhile, and the lock with it
        entry.times -= 1
        if entry.times == 0:
            del held[(self.scope, key)]  # forgotten first: a release that fails must not leave it "held"
            entry.backend.release(key)  # the backend that took it


def lease_seconds() -> float:
    value = os.environ.get(LEASE_ENV)
    if value is None:
        return DEFAULT_LEASE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if seconds <= 0:
        raise ConfigurationError(f"{LEASE_ENV} must be a number of seconds above 0, not {value!r}")
    return seconds


def _file_or_lease(profile: Profile) -> bool:
    """Backends that need no SQL session: DuckDB's file lock and MongoDB's leases."""
    return profile.documents or "mongodb" in profile.destination or profile.destination.endswith("duckdb")


def open_backend(profile: Profile, dataset: str, holder: str, pipeline: Optional[dlt.Pipeline]) -> LockBackend:
    kind = profile.destination.rsplit(".", 1)[-1]
    if profile.documents or "mongodb" in profile.destination:
        from makini_sync.destinations.mongodb.connection import get_client

        uri = str(dlt.secrets[f"destination.{profile.name}.credentials"])
        database = get_client(uri).get_default_database(default=dataset)
        return LeaseLocks(MongoLeaseStore(database), holder, lease_seconds())
    if kind == "duckdb":
        return FileLocks(duckdb_lock_path(profile, dataset))
    assert pipeline is not None  # WriterLocks.backend gives SQL backends one
    open_client = pipeline.sql_client
    if kind == "postgres":
        return PostgresLocks(open_client, dataset, holder)
    if kind == "sqlalchemy":  # MySQL/MariaDB, the one sqlalchemy destination destinations.toml names
        return MySqlLocks(open_client, dataset, holder)
    if kind == "snowflake":
        return LeaseLocks(SqlLeaseStore(open_client), holder, lease_seconds())
    raise ConfigurationError(
        f"destination {profile.name!r} ({profile.destination}) has no writers' lock: makini-sync supports "
        "duckdb, postgres, sqlalchemy (MySQL/MariaDB), snowflake and its mongodb destination")


def duckdb_lock_path(profile: Profile, dataset: str) -> Path:
    """Beside the DuckDB file, so every process that opens it finds the same lock
    whatever its dlt data dir; under dlt's data dir for a database without a file."""
    path = profile.duckdb_file()
    if path is not None:
        return Path(path).resolve().with_name(Path(path).name + f".{dataset}.writer.lock")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{profile.name}.{dataset}")
    return Path(dlt.current.run_context().data_dir) / "locks" / f"{safe}.lock"


@contextlib.contextmanager
def pipeline_run_lock(pipeline_name: str) -> Iterator[None]:
    """One run at a time per pipeline working directory (a cron run that overlaps the
    last one waits for it): two runs would share pending packages, spools and state.
    Taken before any writer lock; a nested take in the same thread is free."""
    path = Path(dlt.current.run_context().data_dir) / "locks" / f"{pipeline_name}.run.lock"
    runs = _held_locks()
    if ("run", str(path)) in runs:
        yield
        return
    runs[("run", str(path))] = None
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for the run of pipeline %s that holds %s (%s)", pipeline_name, path,
                        path.read_text().strip() or "another process")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        try:
            yield
        finally:
            runs.pop(("run", str(path)), None)
            fcntl.flock(handle, fcntl.LOCK_UN)
