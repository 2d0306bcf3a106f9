"""Full syncs of makini-sync under different settings, alternating, medians compared.

    python benchmarks/sync_variants.py --rounds 4 base \\
        'cap256:DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG={"memory_limit": "256MB", "threads": 2}'
    python benchmarks/sync_variants.py --rounds 4 base 'head:REPO=/tmp/head-checkout'
    python benchmarks/sync_variants.py --rounds 3 --shape drift_int64 base 'head:REPO=/tmp/head-checkout'

A variant is ``name:KEY=VALUE;KEY=VALUE`` (environment for the sync's
process; ``REPO`` runs another checkout's code, ``MODE=rest_api`` the generic
source). This machine's speed drifts by 10-20% from one minute to the next, so
one run each decides nothing: the variants take turns against one sandbox,
each sync into a fresh database, and the medians of wall time (the sync's own
clock, and the whole process's with start-up and exit), CPU time and the largest
peak RSS are printed. A run whose DuckDB ran out of memory (and was
retried by dlt) is flagged.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from makini_sandbox import Sandbox  # noqa: E402


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    name, _, settings = spec.partition(":")
    env = {}
    for item in filter(None, settings.split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"variant {name!r}: {item!r} is not KEY=VALUE")
        env[key] = value
    return name, env


def one_sync(env: dict[str, str], sandbox: Sandbox, workdir: Path) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    repo = Path(env.get("REPO", REPO))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "sync_one.py"), "--mode", env.get("MODE", "makini"),
         "--base-url", sandbox.base_url, "--token", sandbox.tokens[0], "--db", str(workdir / "bench.duckdb")],
        env={**os.environ, "DLT_DATA_DIR": str(workdir / "dlt"), "RUNTIME__LOG_LEVEL": "WARNING", **env},
        capture_output=True, text=True, cwd=workdir,
    )
    process_seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit(f"sync failed:\n{run.stderr[-3000:]}")
    figures = orjson.loads(run.stdout.strip().splitlines()[-1])
    figures["process_seconds"] = round(process_seconds, 2)  # start-up and exit too, as cron pays them
    figures["cpu_seconds"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
    figures["duckdb_out_of_memory"] = "OutOfMemory" in run.stderr or "Out of Memory" in run.stderr
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+", help="name or name:KEY=VALUE;KEY=VALUE")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--purchase-orders", type=int, default=100_000)
    parser.add_argument("--shape", default="default", help="the sandbox's deployment shape (makini_sandbox/shapes.py)")
    args = parser.parse_args()
    variants = [parse_variant(spec) for spec in args.variants]
    sizes = {"purchase-orders": args.purchase_orders, "work-orders": 20_000, "assets": 10_000,
             "inventory-items": 20_000, "vendors": 2_000}
    runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory() as tmp, Sandbox(seed=1, sizes=sizes, connections=1,
                                                       shapes=None if args.shape == "default" else [args.shape],
                                                       rate_limit_per_minute=10**9) as sandbox:
        for round_number in range(args.rounds):
            for name, env in variants:
                figures = one_sync(env, sandbox, Path(tmp) / "run")
                runs[name].append(figures)
                print(f"round {round_number + 1} {name:<12} {figures['seconds']:>6.2f} s  "
                      f"process {figures['process_seconds']:>6.2f} s  cpu {figures['cpu_seconds']:>6.2f} s  "
                      f"peak RSS {figures['peak_rss_mb']} MB" + ("  (DuckDB out of memory, retried)"
                                                                if figures["duckdb_out_of_memory"] else ""), flush=True)
    for name, figures in runs.items():
        seconds = [f["seconds"] for f in figures]
        print(f"{name:<12} median {statistics.median(seconds):.2f} s ({', '.join(f'{s:.2f}' for s in seconds)}), "
              f"process median {statistics.median(f['process_seconds'] for f in figures):.2f} s, "
              f"cpu median {statistics.median(f['cpu_seconds'] for f in figures):.2f} s, "
              f"peak RSS max {max(f['peak_rss_mb'] for f in figures)} MB, "
              f"records/s median {statistics.median(f['records_per_s'] for f in figures):.0f}")


if __name__ == "__main__":
    main()
