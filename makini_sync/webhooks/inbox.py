"""The durable inbox: every accepted webhook, stored before it is acknowledged.

SQLite in WAL mode with ``synchronous=FULL``: once ``append`` returns, the
event survives ``kill -9`` and power loss. The table is also the idempotency
ledger: ``webhook-id`` is its primary key, so a retried delivery is stored
once; processed events are kept ``RETENTION_DAYS`` (well past the sender's
24 h retry horizon) and then pruned. Events that keep failing move to the
dead-letter status after ``max_attempts``.

Written by hand rather than with a queue library: it is one table, and the
receiver needs group commit (many requests, one fsync) which is a few lines
on top of sqlite3.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

logger = logging.getLogger(__name__)

RETENTION_DAYS = 8
INSERT_CHUNK = 500  # rows per INSERT: 1,500 parameters, well under SQLite's limit
DEFAULT_INBOX = "makini_webhooks.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    webhook_id   TEXT PRIMARY KEY,
    received_at  REAL NOT NULL,
    body         BLOB NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',  -- pending | done | dead
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    processed_at REAL
);
CREATE INDEX IF NOT EXISTS events_by_status ON events (status, received_at);
"""


@dataclass(frozen=True)
class StoredEvent:
    webhook_id: str
    received_at: float
    body: bytes
    attempts: int
    last_error: Optional[str] = None


class Inbox:
    """One SQLite file; safe to share between a receiver and processors (own connections)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def checkpoint_in_background(self, interval: float = 0.5) -> "Checkpointer":
        """Move WAL checkpoints off this thread's commits (see ``Checkpointer``)."""
        self._conn().execute("PRAGMA wal_autocheckpoint=0")
        return Checkpointer(self.path, interval)

    def append(self, events: Iterable[tuple[str, bytes]]) -> list[bool]:
        """Store events in one transaction (one fsync); True where new, False where a duplicate.

        One multi-row ``INSERT ... RETURNING`` per chunk rather than a statement
        per event: every acknowledgement waits for this, so the Python work per
        event is kept to binding its three values.
        """
        events = list(events)
        conn = self._conn()
        now = time.time()
        inserted: set[str] = set()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(events), INSERT_CHUNK):
                chunk = events[start:start + INSERT_CHUNK]
                values = ",".join(["(?,?,?)"] * len(chunk))
                params = [v for webhook_id, body in chunk for v in (webhook_id, now, body)]
                inserted.update(row[0] for row in conn.execute(
                    f"INSERT OR IGNORE INTO events (webhook_id, received_at, body) VALUES {values}"
                    " RETURNING webhook_id", params,
                ))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        stored = []
        for webhook_id, _ in events:  # a repeat within the batch is a duplicate of the first
            stored.append(webhook_id in inserted)
            inserted.discard(webhook_id)
        return stored

    def pending(self, limit: int = 1000) -> list[StoredEvent]:
        rows = self._conn().execute(
            "SELECT webhook_id, received_at, body, attempts, last_error FROM events"
            " WHERE status = 'pending' ORDER BY received_at, webhook_id LIMIT ?",
            (limit,),
        ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def mark_done(self, webhook_ids: list[str]) -> None:
        now = time.time()
        self._many("UPDATE events SET status = 'done', processed_at = ?, last_error = NULL WHERE webhook_id = ?",
                   [(now, w) for w in webhook_ids])

    def mark_failed(self, webhook_ids: list[str], error: str, max_attempts: int) -> None:
        """Count a failed attempt; an event that reached ``max_attempts`` is dead-lettered."""
        self._many(
            "UPDATE events SET attempts = attempts + 1, last_error = ?,"
            " status = CASE WHEN attempts + 1 >= ? THEN 'dead' ELSE 'pending' END WHERE webhook_id = ?",
            [(error[:2000], max_attempts, w) for w in webhook_ids],
        )

    def dead(self, limit: int = 100) -> list[StoredEvent]:
        rows = self._conn().execute(
            "SELECT webhook_id, received_at, body, attempts, last_error FROM events"
            " WHERE status = 'dead' ORDER BY received_at LIMIT ?",
            (limit,),
        ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def replay(self, webhook_ids: Optional[list[str]] = None) -> int:
        """Move dead-lettered events (all, or the named ones) back to pending."""
        conn = self._conn()
        if webhook_ids:
            marks = ",".join("?" * len(webhook_ids))
            cur = conn.execute(
                f"UPDATE events SET status = 'pending', attempts = 0 WHERE status = 'dead' AND webhook_id IN ({marks})",
                webhook_ids,
            )
        else:
            cur = conn.execute("UPDATE events SET status = 'pending', attempts = 0 WHERE status = 'dead'")
        return cur.rowcount

    def prune(self, retention_days: float = RETENTION_DAYS) -> int:
        cutoff = time.time() - retention_days * 86400
        cur = self._conn().execute("DELETE FROM events WHERE status = 'done' AND received_at < ?", (cutoff,))
        return cur.rowcount

    def counts(self) -> dict:
        conn = self._conn()
        by_status = dict(conn.execute("SELECT status, COUNT(*) FROM events GROUP BY status").fetchall())
        failing = conn.execute("SELECT COUNT(*) FROM events WHERE status = 'pending' AND attempts > 0").fetchone()[0]
        oldest = conn.execute("SELECT MIN(received_at) FROM events WHERE status = 'pending'").fetchone()[0]
        return {
            "pending": by_status.get("pending", 0),
            "done": by_status.get("done", 0),
            "dead": by_status.get("dead", 0),
            "failing": failing,
            "lag_seconds": max(time.time() - oldest, 0.0) if oldest else 0.0,
        }

    def _many(self, sql: str, rows: list[tuple]) -> None:
        if not rows:
            return
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


class Checkpointer:
    """Copies the WAL back into the database from a thread of its own.

    By default SQLite checkpoints inside whichever commit crosses 1,000 WAL
    pages, so now and then one receiver commit also writes and fsyncs the
    database file, and every request in that batch waits: that set the p99
    acknowledgement latency (benchmarks/receiver_benchmark.py). A PASSIVE checkpoint never blocks writers, and
    SQLite's C code runs it without the GIL.
    """

    def __init__(self, path: Path, interval: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path, interval), name="inbox-checkpoint", daemon=True)
        self._thread.start()

    def _run(self, path: Path, interval: float) -> None:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # busy or locked: the next round tries again
                    logger.debug("inbox checkpoint skipped: %s", exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
