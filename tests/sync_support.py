"""Helpers for sync tests: run a sync into a DuckDB file and compare with the sandbox truth."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from makini_sync.destinations.profiles import Profile, load_profile
from makini_sync.run.sync import SyncResult, run_sync
from sources.makini.bookmark import iso_ms
from sources.makini.client import RetryPolicy
from sources.makini.settings import ENTITIES

FAST_RETRIES = RetryPolicy(budget_seconds=60, base_backoff=0.01, max_backoff=0.05, max_retry_after=0.2)


def duckdb_profile(db_path: Path) -> Profile:
    profile = load_profile("duckdb")
    return profile.with_settings(credentials=str(db_path))


def sync(db_path: Path, sandbox, tokens=None, **kwargs) -> SyncResult:
    kwargs.setdefault("retry_policy", FAST_RETRIES)
    return run_sync(
        duckdb_profile(db_path),
        base_url=sandbox.base_url,
        api_token=tokens if tokens is not None else sandbox.tokens,
        **kwargs,
    )


def warehouse_versions(db_path: Path, table: str, connection_id: str) -> dict[str, str]:
    with duckdb.connect(str(db_path), read_only=True) as db:
        rows = db.execute(
            f"SELECT id, updated_at FROM makini.{table} WHERE connection_id = ?", [connection_id]
        ).fetchall()
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), f"duplicate rows in {table}"
    return {rid: iso_ms(ts) for rid, ts in rows}


def line_counts(db_path: Path, connection_id: str) -> dict[str, int]:
    with duckdb.connect(str(db_path), read_only=True) as db:
        rows = db.execute(
            "SELECT purchase_order_id, COUNT(*) FROM makini.purchase_orders__line_items"
            " WHERE connection_id = ? GROUP BY 1", [connection_id]
        ).fetchall()
    return dict(rows)


def assert_exact(db_path: Path, sandbox, connection_ids=None, entities=None) -> None:
    """Every table equals the sandbox truth: same ids, same updated_at, same line counts."""
    for connection in sandbox.connections:
        if connection_ids is not None and connection["id"] not in connection_ids:
            continue
        for entity in ENTITIES.values():
            if entities is not None and entity.table not in entities:
                continue
            truth = sandbox.control.truth(connection["id"], entity.slug, detail=True)
            expected = {rid: rec["updated_at"] for rid, rec in truth["records"].items()}
            got = warehouse_versions(db_path, entity.table, connection["id"])
            assert len(got) == truth["count"], f"{entity.table}: {len(got)} rows, truth {truth['count']}"
            assert got == expected, f"{entity.table} differs from the sandbox truth"
            if entity.children:
                expected_lines = {rid: rec["line_count"] for rid, rec in truth["records"].items() if rec["line_count"]}
                assert line_counts(db_path, connection["id"]) == expected_lines


@contextmanager
def mutating(sandbox, interval: float = 0.02, seed: int = 1) -> Iterator[list]:
    """Mutates every entity of every connection in a background thread until exit."""
    stop = threading.Event()
    done: list = []

    def loop() -> None:
        i = 0
        while not stop.is_set():
            for connection in sandbox.connections:
                for entity in ENTITIES.values():
                    done.append(sandbox.control.mutate(
                        connection["id"], entity.slug, update=0.01, insert=2, soft_delete=0.005, seed=seed + i
                    ))
                    i += 1
            stop.wait(interval)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join()
