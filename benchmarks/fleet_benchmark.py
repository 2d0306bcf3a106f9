"""A fleet of connections: latency, per-connection rate limits, scale, and one big connection.

    .venv/bin/python benchmarks/fleet_benchmark.py                  # every case, 2 rounds
    .venv/bin/python benchmarks/fleet_benchmark.py --cases 1,2 --rounds 3
    .venv/bin/python benchmarks/fleet_benchmark.py --cases 4 --baseline bef468a

Every sync is ``python -m pipelines.sync --destination duckdb`` in a process
of its own (peak RSS: its VmHWM, read every 0.1 s), against a sandbox in a process of its
own; the rounds alternate the variants of a case and the figures are medians.
Each case prints the bound the sandbox's served requests allow next to the
wall time, and every run is checked exact (rows per connection and table
against the sandbox's truth).

1. 200 connections of about 100 records, 100 ms of latency per request,
   against the same sync at 0 ms. Target: at most 1.5x the 0 ms time + 3 s.
   The latency bound is requests x latency / concurrency.
2. 8 connections of 6,000 orders and 500 of each other entity, each allowed
   10 requests per 5 s. Bound per connection: (ceil(admitted / 10) - 1) x 5 s
   + 1 s; the largest. Target: at most 1.5x the bound + 5 s, 429s at most 10%
   of requests. Run with the sandbox's ``X-RateLimit-Reset`` header and without
   it (a server that sends only Limit and Remaining: the pacer learns the
   window's length from two 429s).
3. 1,000 connections of about 100 records at 100 ms, against 0 ms. Wall
   time, peak RSS, requests/s. Target: at most 1.5x the 0 ms time, 600 MB.
4. One connection of 100k orders, no latency: records/s against the code at
   ``--baseline`` (a git revision, checked out in a temporary worktree), in
   the same run. Target: no slower.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import duckdb
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from makini_sandbox import Sandbox  # noqa: E402
from sources.makini.page_workers import process_peak_rss_mb  # noqa: E402
from sources.makini.settings import ENTITIES  # noqa: E402

SMALL = {"purchase-orders": 40, "work-orders": 20, "assets": 15, "inventory-items": 15, "vendors": 10}
RATE_LIMITED = {"purchase-orders": 6000, "work-orders": 500, "assets": 500, "inventory-items": 500, "vendors": 500}
BIG = {"purchase-orders": 100_000, "work-orders": 10_000, "assets": 10_000, "inventory-items": 10_000,
       "vendors": 2_000}


@dataclass
class Run:
    wall: float
    rss_mb: float
    requests: int
    refused: int
    admitted: dict
    records: int


def sync(sandbox: Sandbox, workdir: Path, label: str, extra: list[str], code: Path = REPO) -> Run:
    """One sync of every sandbox connection into a fresh DuckDB file, as a process of its own."""
    run_dir = workdir / label
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    db = run_dir / "w.duckdb"
    env = {**os.environ, "SOURCES__MAKINI__BASE_URL": sandbox.base_url,
           "SOURCES__MAKINI__API_TOKEN": orjson.dumps(sandbox.tokens).decode(),
           "DESTINATION__DUCKDB__CREDENTIALS": str(db), "DLT_DATA_DIR": str(run_dir / "dlt"),
           "PYTHONPATH": str(code)}
    sandbox.control.requests_served(reset=True)
    started = time.monotonic()
    with open(run_dir / "out", "wb") as out, open(run_dir / "err", "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "pipelines.sync", "--no-progress", *extra], cwd=code,
                                   env=env, stdout=out, stderr=err)
        rss_mb = 0.0
        while process.poll() is None:  # VmHWM: ru_maxrss would carry this process's RSS at the fork
            rss_mb = max(rss_mb, process_peak_rss_mb(process.pid))
            time.sleep(0.1)
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"{label} exited {process.returncode}:\n{(run_dir / 'out').read_text()[-2000:]}\n"
                         f"{(run_dir / 'err').read_text()[-3000:]}")
    served = sandbox.control.requests_served()
    admission = served.get("admission", {})
    admitted = {c: a.get("admitted", 0) for c, a in admission.items()}
    refused = sum(a.get("refused", 0) for a in admission.values())
    records = _check_exact(db, sandbox)
    shutil.rmtree(run_dir, ignore_errors=True)
    return Run(wall, rss_mb, served["total"], refused, admitted, records)


def _check_exact(db: Path, sandbox: Sandbox) -> int:
    """Rows per (connection, table) equal the sandbox's truth; returns the rows checked."""
    total = 0
    with duckdb.connect(str(db), read_only=True) as con:
        for entity in ENTITIES.values():
            got = dict(con.execute(
                f"SELECT connection_id, COUNT(*) FROM makini.{entity.table} GROUP BY 1").fetchall())
            for connection in sandbox.connections:
                want = sandbox.control.truth(connection["id"], entity.slug)["count"]
                if got.get(connection["id"], 0) != want:
                    raise SystemExit(f"not exact: {entity.table} of {connection['id']}: "
                                     f"{got.get(connection['id'], 0)} rows against {want}")
                total += want
    return total


def rate_bound(admitted: dict, limit: int, window: float) -> float:
    return max(((math.ceil(n / limit) - 1) * window + 1.0) for n in admitted.values() if n) if admitted else 0.0


def medians(runs: list[Run]) -> Run:
    return Run(statistics.median(r.wall for r in runs), statistics.median(r.rss_mb for r in runs),
               int(statistics.median(r.requests for r in runs)), int(statistics.median(r.refused for r in runs)),
               runs[0].admitted, runs[0].records)


def latency_case(args: argparse.Namespace, workdir: Path, connections: int, name: str, ratio: float,
                 plus: float, rss_target: Optional[float] = None) -> None:
    print(f"\n== case {name}: {connections} connections of ~{sum(SMALL.values())} records, "
          f"{args.latency_ms:g} ms latency against 0 ms (concurrency {args.concurrency})")
    variants: dict[str, list[Run]] = {"0 ms": [], f"{args.latency_ms:g} ms": []}
    with Sandbox(seed=31, sizes=SMALL, connections=connections) as sandbox:
        for _ in range(args.rounds):
            for label in variants:
                latency = 0.0 if label == "0 ms" else args.latency_ms
                sandbox.control.set_latency(latency)
                variants[label].append(sync(sandbox, workdir, f"case{name}", ["--concurrency", str(args.concurrency)]))
    zero, slow = medians(variants["0 ms"]), medians(variants[f"{args.latency_ms:g} ms"])
    bound = slow.requests * args.latency_ms / 1000 / args.concurrency
    for label, r in (("0 ms", zero), (f"{args.latency_ms:g} ms", slow)):
        print(f"  {label:>7}: {r.wall:7.1f} s  {r.requests} requests ({r.requests / r.wall:6.0f}/s)  "
              f"peak RSS {r.rss_mb:5.0f} MB  {r.records} rows exact")
    target = ratio * zero.wall + plus
    rss = f"; peak RSS {slow.rss_mb:.0f} MB against {rss_target:.0f} MB" if rss_target else ""
    print(f"  latency bound (requests x latency / concurrency) {bound:.1f} s; "
          f"{slow.wall:.1f} s against the target {target:.1f} s ({ratio:g} x 0 ms + {plus:g} s): "
          f"{'met' if slow.wall <= target else 'MISSED'}{rss}")


def rate_case(args: argparse.Namespace, workdir: Path) -> None:
    print(f"\n== case 2: 8 connections of {RATE_LIMITED['purchase-orders']} orders, 10 requests per 5 s each "
          f"({args.latency_ms:g} ms latency), with and without X-RateLimit-Reset")
    variants: dict[str, list[Run]] = {"with Reset": [], "without Reset": []}
    with Sandbox(seed=32, sizes=RATE_LIMITED, connections=8) as sandbox:
        sandbox.control.set_latency(args.latency_ms)
        for _ in range(args.rounds):
            for label, runs in variants.items():
                sandbox.control.set_rate_limit(10, 5, reset_header=label == "with Reset")
                runs.append(sync(sandbox, workdir, "case2", ["--concurrency", str(args.concurrency)]))
    for label, runs in variants.items():
        for r in runs:
            bound = rate_bound(r.admitted, 10, 5.0)
            target = 1.5 * bound + 5
            share = r.refused / r.requests if r.requests else 0.0
            print(f"  {label:>13}: {r.wall:6.1f} s against the bound {bound:.1f} s (target {target:.1f} s: "
                  f"{'met' if r.wall <= target else 'MISSED'}); {r.requests} requests, {r.refused} refused with 429 "
                  f"({share:.1%}, target 10%: {'met' if share <= 0.10 else 'MISSED'}); {r.records} rows exact")


def big_case(args: argparse.Namespace, workdir: Path) -> None:
    print(f"\n== case 4: one connection of {BIG['purchase-orders']} orders, no latency: this code against "
          f"{args.baseline}")
    base_dir = Path(tempfile.mkdtemp(prefix="fleet_baseline_"))
    subprocess.run(["git", "worktree", "add", "--detach", str(base_dir), args.baseline], cwd=REPO, check=True,
                   capture_output=True)
    try:
        variants: dict[str, list[Run]] = {"this code": [], args.baseline: []}
        with Sandbox(seed=33, sizes=BIG, connections=1) as sandbox:
            for _ in range(args.rounds):
                for label in variants:
                    code = REPO if label == "this code" else base_dir
                    variants[label].append(sync(sandbox, workdir, "case4", [], code=code))
        for label, runs in variants.items():
            r = medians(runs)
            print(f"  {label:>10}: {r.wall:7.1f} s  {r.records / r.wall:9.0f} records/s  peak RSS {r.rss_mb:5.0f} MB"
                  f"  (walls {', '.join(f'{x.wall:.1f}' for x in runs)})")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base_dir)], cwd=REPO, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="1,2,3,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--baseline", default="bef468a", help="git revision for case 4 (default: before issue 20)")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="fleet_bench_"))
    try:
        if "1" in cases:
            latency_case(args, workdir, 200, "1", 1.5, 3.0)
        if "2" in cases:
            rate_case(args, workdir)
        if "3" in cases:
            latency_case(args, workdir, 1000, "3", 1.5, 0.0, rss_target=600)
        if "4" in cases:
            big_case(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
