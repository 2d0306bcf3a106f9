"""Helpers for tests with several writers: exactness on any target, worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Optional

import orjson

from makini_sync.workers.selection import Shard
from sources.makini.settings import ENTITIES
from tests.destination_targets import POSTGRES_URL

REPO = Path(__file__).resolve().parent.parent
PG = {"DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_URL}


def assert_target_exact(target, sandbox, connection_ids: Optional[Iterable[str]] = None) -> None:
    """Every table of ``target`` equals the sandbox truth for the connections given (default: all)."""
    wanted = set(connection_ids) if connection_ids is not None else {c["id"] for c in sandbox.connections}
    for connection_id in sorted(wanted):
        for entity in ENTITIES.values():
            truth = sandbox.control.truth(connection_id, entity.slug, detail=True)
            expected = {rid: rec["updated_at"] for rid, rec in truth["records"].items()}
            got = target.versions(entity.table, connection_id)
            assert got == expected, (f"{target.name}: {entity.table} of {connection_id} differs from the truth: "
                                     f"{len(got)} rows against {len(expected)}, "
                                     f"{sum(1 for k, v in got.items() if expected.get(k) != v)} not as the truth")
            if entity.children:
                lines = {rid: rec["line_count"] for rid, rec in truth["records"].items() if rec["line_count"]}
                assert target.line_counts(connection_id) == lines, f"{target.name}: line items of {connection_id}"


def worker_env(sandbox, data_dir: Path, extra: Optional[dict] = None) -> dict:
    env = {
        **os.environ,
        "SOURCES__MAKINI__BASE_URL": sandbox.base_url,
        "SOURCES__MAKINI__API_TOKEN": orjson.dumps(sandbox.tokens).decode(),
        "DLT_DATA_DIR": str(data_dir),
    }
    env.update(extra or {})
    return env


def start_worker(sandbox, data_dir: Path, *args: str, extra_env: Optional[dict] = None) -> subprocess.Popen:
    """``python -m pipelines.sync ARGS`` as a separate process with its own dlt data dir (a host)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.sync", "--no-progress", *args],
        cwd=REPO, env=worker_env(sandbox, data_dir, extra_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"worker exited {process.returncode}: {err[-3000:]}"
    return out


def list_pages(served: dict, connection_ids: Iterable[str]) -> int:
    """API list pages the sandbox served to these connections (not the id or status lookups)."""
    slugs = {e.slug for e in ENTITIES.values()}
    return sum(count for cid in connection_ids
               for what, count in served["by_connection"].get(cid, {}).items() if what in slugs)


def shards_of(sandbox, count):
    """The sandbox's connection ids in each of ``count`` shards."""
    by_token = {c["token"]: c["id"] for c in sandbox.connections}
    return [[by_token[t] for t in by_token if Shard(k, count).holds(t)] for k in range(1, count + 1)]


def run_hosts(sandbox, hosts, args=()):
    """One worker process per host (data dir), each syncing its shard into PostgreSQL at once."""
    workers = [start_worker(sandbox, data_dir, "--destination", "postgres", "--shard", f"{k}/{len(hosts)}", *args,
                            extra_env=PG) for k, data_dir in enumerate(hosts, start=1)]
    return [finish(w) for w in workers]
