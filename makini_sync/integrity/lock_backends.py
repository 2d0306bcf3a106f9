"""Where a writer lock lives, one backend per kind of destination.

Each backend holds named locks for one destination dataset and answers who
holds one it cannot get:

- PostgreSQL: session-level advisory locks on one connection of their own.
  They end with the session, so a holder killed with SIGKILL releases them at
  once (the server sees the socket close).
- MySQL/MariaDB: ``GET_LOCK`` on one connection of their own; the same.
- Snowflake and MongoDB: a lease (a row in ``_makini_writer_leases``, a
  document in the ``_makini_writer_leases`` collection) with a holder and an
  expiry, renewed by a thread every third of the lease. A holder killed with
  SIGKILL blocks the others until its lease expires.
- DuckDB: one file on one host; a file lock beside the database file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 60.0
LEASE_TABLE = "_makini_writer_leases"


class LockBackend(Protocol):
    @property
    def lease_seconds(self) -> Optional[float]:
        """Seconds a dead holder can block others (None: released with its session)."""

    def try_acquire(self, key: str) -> bool: ...
    def acquire(self, key: str) -> None: ...  # blocks
    def release(self, key: str) -> None: ...
    def holder_of(self, key: str) -> str: ...
    def check(self) -> None: ...  # raises WriterLockLost if the locks may be gone
    def close(self) -> None: ...


class WriterLockLost(RuntimeError):
    """The session or lease that held the writer locks ended while they were held."""


def _int32(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big", signed=True)


class PostgresLocks:
    """Advisory locks keyed (dataset, lock name), on a session named after the holder."""

    lease_seconds = None

    def __init__(self, open_client: Callable[[], Any], dataset: str, holder: str) -> None:
        self._stack = contextlib.ExitStack()
        self.client = self._stack.enter_context(open_client())
        self.dataset_key = _int32(f"makini-sync:{dataset}")
        # the waiter reads the holder's name from pg_stat_activity
        self.client.execute_sql("SELECT set_config('application_name', %s, false)", holder[:63])

    def try_acquire(self, key: str) -> bool:
        return bool(self.client.execute_sql("SELECT pg_try_advisory_lock(%s, %s)", self.dataset_key, _int32(key))[0][0])

    def acquire(self, key: str) -> None:
        self.client.execute_sql("SELECT pg_advisory_lock(%s, %s)", self.dataset_key, _int32(key))

    def release(self, key: str) -> None:
        self.client.execute_sql("SELECT pg_advisory_unlock(%s, %s)", self.dataset_key, _int32(key))

    def holder_of(self, key: str) -> str:
        rows = self.client.execute_sql(
            "SELECT a.application_name, a.client_addr, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
            " AND l.classid::bigint = %s AND l.objid::bigint = %s",
            self.dataset_key & 0xFFFFFFFF, _int32(key) & 0xFFFFFFFF,  # oids are unsigned
        )
        if not rows:
            return "another writer (gone meanwhile)"
        name, address, pid = rows[0]
        return f"{name or 'a session'} (server pid {pid}{f', from {address}' if address else ''})"

    def check(self) -> None:
        _check_session(self.client, "PostgreSQL")

    def close(self) -> None:
        self._stack.close()  # ends the session: every lock it held goes with it


class MySqlLocks:
    """``GET_LOCK`` names (64 characters at most) on a session of their own."""

    lease_seconds = None
    WAIT_STEP = 30  # seconds per GET_LOCK call; it is called again until it succeeds

    def __init__(self, open_client: Callable[[], Any], dataset: str, holder: str) -> None:
        self._stack = contextlib.ExitStack()
        self.client = self._stack.enter_context(open_client())
        self.dataset = dataset
        self.holder = holder

    def _name(self, key: str) -> str:
        return "makini-sync:" + hashlib.sha256(f"{self.dataset}:{key}".encode()).hexdigest()[:48]

    def try_acquire(self, key: str) -> bool:
        return self.client.execute_sql("SELECT GET_LOCK(%s, 0)", self._name(key))[0][0] == 1

    def acquire(self, key: str) -> None:
        while True:
            got = self.client.execute_sql("SELECT GET_LOCK(%s, %s)", self._name(key), self.WAIT_STEP)[0][0]
            if got == 1:
                return
            if got is None:  # an error inside GET_LOCK (killed query): do not spin on it
                time.sleep(1.0)

    def release(self, key: str) -> None:
        self.client.execute_sql("SELECT RELEASE_LOCK(%s)", self._name(key))

    def holder_of(self, key: str) -> str:
        rows = self.client.execute_sql(
            "SELECT p.ID, p.HOST FROM information_schema.PROCESSLIST p WHERE p.ID = IS_USED_LOCK(%s)", self._name(key))
        if not rows:
            return "another writer (gone meanwhile)"
        return f"MySQL session {rows[0][0]} from {rows[0][1]}"

    def check(self) -> None:
        _check_session(self.client, "MySQL")

    def close(self) -> None:
        self._stack.close()


def _check_session(client: Any, what: str) -> None:
    """Session locks end with their session: a session that died meanwhile (a restart,
    an idle timeout) took them with it, and loading on would be unguarded."""
    try:
        client.execute_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means the session cannot be trusted
        raise WriterLockLost(
            f"the {what} session holding the writer locks ended ({type(exc).__name__}); "
            "the run stops before loading unguarded; rerun it"
        ) from None


class FileLocks:
    """One lock file beside the DuckDB file (or under dlt's data dir for a database
    without a file); every name maps to it, since DuckDB has one writer anyway."""

    lease_seconds = None

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a+")
        self.taken = 0  # the file stays locked while anything holds it (threads of one run share it)
        self._mutex = threading.Lock()

    def try_acquire(self, key: str) -> bool:
        with self._mutex:
            if not self.taken:
                try:
                    fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                self._write_holder()
            self.taken += 1
            return True

    def acquire(self, key: str) -> None:
        if self.try_acquire(key):
            return
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        with self._mutex:
            self._write_holder()
            self.taken += 1

    def _write_holder(self) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(_holder_here())
        self.handle.flush()

    def release(self, key: str) -> None:
        with self._mutex:
            self.taken -= 1
            if not self.taken:
                fcntl.flock(self.handle, fcntl.LOCK_UN)

    def holder_of(self, key: str) -> str:
        with contextlib.suppress(OSError):
            return self.path.read_text().strip() or "another writer"
        return "another writer"

    def check(self) -> None:
        pass  # a file lock lasts as long as the process

    def close(self) -> None:
        self.handle.close()


def _holder_here() -> str:
    return f"pid {os.getpid()} on {os.uname().nodename}"


class LeaseLocks:
    """Leases with a holder and an expiry; a thread renews the held ones.

    ``store`` does the atomic steps on the destination (``SqlLeaseStore``,
    ``MongoLeaseStore``). Expiry is judged by the destination's writers'
    clocks, so hosts must keep their clocks within a small part of the lease.
    """

    POLL_SECONDS = 1.0

    def __init__(self, store: Any, holder: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.store, self.holder, self.lease_seconds = store, holder, lease_seconds
        self.held: set[str] = set()
        self.lost: Optional[str] = None  # why the leases can no longer be trusted
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name="makini-lease-renewer", daemon=True)
        self._renewer.start()

    def _expiry(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.lease_seconds)

    def try_acquire(self, key: str) -> bool:
        with self._mutex:
            if self.store.claim(key, self.holder, dt.datetime.now(dt.timezone.utc), self._expiry()):
                self.held.add(key)
                return True
            return False

    def acquire(self, key: str) -> None:
        while not self.try_acquire(key):
            self._stop.wait(min(self.POLL_SECONDS, self.lease_seconds / 10))

    def release(self, key: str) -> None:
        with self._mutex:
            self.held.discard(key)
            self.store.free(key, self.holder)

    def holder_of(self, key: str) -> str:
        with self._mutex:
            found = self.store.holder(key)
        if found is None:
            return "another writer (gone meanwhile)"
        holder, expires = found
        return f"{holder} (lease until {expires})"

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            with self._mutex:
                if not self.held:
                    continue
                try:
                    renewed = self.store.renew(self.holder, self._expiry())
                except Exception as exc:  # noqa: BLE001 - the next renewal tries again, well inside the lease
                    logger.warning("could not renew the writer lease (%s); trying again", type(exc).__name__)
                    continue
                if renewed < len(self.held):
                    self.lost = f"{len(self.held) - renewed} of {len(self.held)} lease(s) were taken over"
                    logger.error("writer leases lost: %s", self.lost)

    def check(self) -> None:
        if self.lost:
            raise WriterLockLost(f"the writer leases of this run ended ({self.lost}); "
                                 "the run stops before loading unguarded; rerun it")

    def close(self) -> None:
        self._stop.set()
        self._renewer.join(timeout=5)
        with self._mutex:
            for key in sorted(self.held):
                with contextlib.suppress(Exception):
                    self.store.free(key, self.holder)
            self.held.clear()
            self.store.close()


class SqlLeaseStore:
    """Leases as rows of ``_makini_writer_leases`` (Snowflake). A claim updates the
    row where the lease has expired or is ours, else inserts it; two writers
    inserting at once both see two rows and both step back."""

    def __init__(self, open_client: Callable[[], Any]) -> None:
        self._stack = contextlib.ExitStack()
        self.client = self._stack.enter_context(open_client())
        self.table = self.client.make_qualified_table_name(LEASE_TABLE)
        if not self.client.has_dataset():
            with contextlib.suppress(Exception):  # another writer created it meanwhile
                self.client.create_dataset()
        self.client.execute_sql(
            f"CREATE TABLE IF NOT EXISTS {self.table} (lock_key VARCHAR(200), holder VARCHAR(300),"
            " expires_at TIMESTAMP_NTZ)")

    def _rows(self, key: str) -> list:
        return list(self.client.execute_sql(f"SELECT holder, expires_at FROM {self.table} WHERE lock_key = %s", key) or [])

    def claim(self, key: str, holder: str, now: dt.datetime, expires: dt.datetime) -> bool:
        naive_now, naive_expires = _naive(now), _naive(expires)
        # expired leases go first, duplicates a writer left by dying mid-claim among them
        self.client.execute_sql(f"DELETE FROM {self.table} WHERE lock_key = %s AND expires_at < %s", key, naive_now)
        rows = self._rows(key)
        if rows:
            if len(rows) == 1 and rows[0][0] == holder:
                self.client.execute_sql(f"UPDATE {self.table} SET expires_at = %s WHERE lock_key = %s AND holder = %s",
                                        naive_expires, key, holder)
                return True
            return False
        self.client.execute_sql(f"INSERT INTO {self.table} (lock_key, holder, expires_at) VALUES (%s, %s, %s)",
                                key, holder, naive_expires)
        rows = self._rows(key)
        if len(rows) > 1:  # another writer inserted at the same time: both step back and try again
            self.client.execute_sql(f"DELETE FROM {self.table} WHERE lock_key = %s AND holder = %s", key, holder)
            return False
        return len(rows) == 1 and rows[0][0] == holder

    def renew(self, holder: str, expires: dt.datetime) -> int:
        """Extends every lease of ``holder`` in one statement; returns how many it still holds."""
        self.client.execute_sql(f"UPDATE {self.table} SET expires_at = %s WHERE holder = %s", _naive(expires), holder)
        return int(self.client.execute_sql(f"SELECT COUNT(*) FROM {self.table} WHERE holder = %s", holder)[0][0])

    def free(self, key: str, holder: str) -> None:
        self.client.execute_sql(f"DELETE FROM {self.table} WHERE lock_key = %s AND holder = %s", key, holder)

    def holder(self, key: str) -> Optional[tuple[str, Any]]:
        rows = self._rows(key)
        return (rows[0][0], rows[0][1]) if rows else None

    def close(self) -> None:
        self._stack.close()


def _naive(moment: dt.datetime) -> dt.datetime:
    """UTC without a zone: Snowflake's TIMESTAMP (NTZ) column compares them as written."""
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)


class MongoLeaseStore:
    """Leases as documents ``{_id: key, holder, expires_at}``; a claim is one upsert
    that matches only an expired lease or our own, so a held lease makes it
    collide on ``_id`` (the document already exists)."""

    def __init__(self, database: Any) -> None:
        from pymongo import WriteConcern

        # a lease acknowledged by the majority survives a failover
        self.collection = database.get_collection(LEASE_TABLE, write_concern=WriteConcern(w="majority"))

    def claim(self, key: str, holder: str, now: dt.datetime, expires: dt.datetime) -> bool:
        from pymongo.errors import DuplicateKeyError

        try:
            result = self.collection.update_one(
                {"_id": key, "$or": [{"expires_at": {"$lt": now}}, {"holder": holder}]},
                {"$set": {"holder": holder, "expires_at": expires}}, upsert=True)
        except DuplicateKeyError:
            return False  # the lease exists, unexpired and another's
        return bool(result.matched_count or result.upserted_id is not None)

    def renew(self, holder: str, expires: dt.datetime) -> int:
        return self.collection.update_many({"holder": holder}, {"$set": {"expires_at": expires}}).matched_count

    def free(self, key: str, holder: str) -> None:
        self.collection.delete_one({"_id": key, "holder": holder})

    def holder(self, key: str) -> Optional[tuple[str, Any]]:
        found = self.collection.find_one({"_id": key})
        return (found.get("holder"), found.get("expires_at")) if found else None

    def close(self) -> None:
        pass  # the client is shared per process (destinations/mongodb/connection.py)
