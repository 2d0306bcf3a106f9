"""Reconcile against a full sync of the same data, into DuckDB and PostgreSQL.

    python benchmarks/reconcile_benchmark.py --purchase-orders 100000 --rounds 3
    python benchmarks/reconcile_benchmark.py --destinations duckdb --rounds 1

Each round, per destination: a full sync into an empty dataset, then drift
(0.5% of orders hard-deleted in the sandbox with no webhook, 0.5% of the
warehouse's orders and vendors deleted, 0.5% made stale), then reconcile.
Each step runs in a process of its own, so peak RSS is its own. Prints
records/s, seconds and peak RSS of both, and reconcile's time and memory as a
share of the full sync's (medians over the rounds). PostgreSQL's ``makini``
schemas in database ``test`` are dropped first: do not point it at data you keep.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from makini_sandbox import Sandbox  # noqa: E402

POSTGRES_URL = os.environ.get("MAKINI_BENCH_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/test")
DRIFT = 0.005


def environment(destination: str, workdir: Path, name: str) -> dict:
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / f"dlt_{name}"), "RUNTIME__LOG_LEVEL": "WARNING"}
    if destination == "duckdb":
        env["DESTINATION__DUCKDB__CREDENTIALS"] = str(workdir / f"{name}.duckdb")
    else:
        env["DESTINATION__POSTGRES__CREDENTIALS"] = POSTGRES_URL
    return env


def step(mode: str, destination: str, sandbox: Sandbox, env: dict, workdir: Path) -> dict:
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "reconcile_one.py"), "--mode", mode, "--destination", destination,
         "--base-url", sandbox.base_url, "--token", sandbox.tokens[0]],
        env=env, capture_output=True, text=True, cwd=workdir,
    )
    if run.returncode != 0:
        raise SystemExit(f"{mode} into {destination} failed:\n{run.stderr[-3000:]}")
    return orjson.loads(run.stdout.strip().splitlines()[-1])


def reset(destination: str) -> None:
    if destination == "postgres":
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for schema in ("makini", *(r[0] for r in conn.execute(  # every pipeline's own staging too
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'makini_staging%'"))):
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def drift_warehouse(destination: str, env: dict, connection_id: str) -> None:
    """Delete and age rows behind the sync's back, as a failed restore or a stray script would."""
    statements = [
        f"DELETE FROM makini.vendors WHERE connection_id = '{connection_id}' AND random() < {DRIFT}",
        f"DELETE FROM makini.purchase_orders WHERE connection_id = '{connection_id}' AND random() < {DRIFT}",
        f"UPDATE makini.purchase_orders SET updated_at = updated_at - INTERVAL '3 days'"
        f" WHERE connection_id = '{connection_id}' AND random() < {DRIFT}",
    ]
    if destination == "duckdb":
        import duckdb

        with duckdb.connect(env["DESTINATION__DUCKDB__CREDENTIALS"]) as conn:
            for sql in statements:
                conn.execute(sql)
    else:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)


def show(label: str, figures: dict) -> None:
    found = ", ".join(f"{k} {figures[k]}" for k in ("missing", "stale", "ghosts", "loaded", "deleted") if k in figures)
    print(f"  {label:<24}{figures['records']:>9} records {figures['seconds']:>8.2f} s {figures['records_per_s']:>8} rec/s"
          f"  peak RSS {figures['peak_rss_mb']:>4} MB" + (f"  ({found})" if found else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--purchase-orders", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--destinations", default="duckdb,postgres")
    args = parser.parse_args()
    sizes = {"purchase-orders": args.purchase_orders, "work-orders": 20_000, "assets": 10_000,
             "inventory-items": 20_000, "vendors": 2_000}
    destinations = args.destinations.split(",")
    with tempfile.TemporaryDirectory() as tmp, Sandbox(seed=1, sizes=sizes, connections=1,
                                                       rate_limit_per_minute=10**9) as sandbox:
        workdir = Path(tmp)
        connection_id = sandbox.connections[0]["id"]
        print(f"sandbox: {sizes}")
        figures: dict = {d: {"sync": [], "reconcile": []} for d in destinations}
        for round_number in range(args.rounds):
            # destinations alternate inside each round: the machine's speed drifts minute to minute
            for destination in destinations:
                name = f"{destination}_{round_number}"
                env = environment(destination, workdir, name)
                reset(destination)
                full = step("sync", destination, sandbox, env, workdir)
                sandbox.control.mutate(connection_id, "purchase-orders", hard_delete=DRIFT, seed=round_number)
                drift_warehouse(destination, env, connection_id)
                fixed = step("reconcile", destination, sandbox, env, workdir)
                print(f"round {round_number + 1}, {destination}:")
                show("full sync", full)
                show("reconcile", fixed)
                figures[destination]["sync"].append(full)
                figures[destination]["reconcile"].append(fixed)
        for destination in destinations:
            sync_s = statistics.median(f["seconds"] for f in figures[destination]["sync"])
            rec_s = statistics.median(f["seconds"] for f in figures[destination]["reconcile"])
            sync_mb = statistics.median(f["peak_rss_mb"] for f in figures[destination]["sync"])
            rec_mb = statistics.median(f["peak_rss_mb"] for f in figures[destination]["reconcile"])
            rate = statistics.median(f["records_per_s"] for f in figures[destination]["reconcile"])
            print(f"[{destination}] reconcile {rate:.0f} rec/s, {rec_s:.2f} s and {rec_mb:.0f} MB peak RSS against "
                  f"a full sync's {sync_s:.2f} s and {sync_mb:.0f} MB: time {rec_s / sync_s:.2f}x, "
                  f"memory {rec_mb / sync_mb:.2f}x (medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
