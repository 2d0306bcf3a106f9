"""Sync workers splitting a fleet with ``--shard K/N``: how wall time scales with N.

    .venv/bin/python benchmarks/workers_benchmark.py --rounds 2
    .venv/bin/python benchmarks/workers_benchmark.py --workers 1,2,4,8 --latency-ms 200 --rounds 3

One sandbox (a process of its own) serves 40 connections, every API request
slowed by ``--latency-ms`` so the run is bound by waiting on the API, as it is
against Makini. Each round runs every variant once, in turn, so the machine's
drift spreads over all of them: for N workers, PostgreSQL's ``makini`` schemas
are dropped, then N ``python -m pipelines.sync --destination postgres --shard
K/N`` processes start at once (each with a dlt data dir of its own) and the
wall time runs until the last one exits. Per variant it prints the median wall
time and the speed-up over one worker, the list pages the sandbox served
(and how many more than the one-worker run of the same round: a worker should
fetch only its own connections' pages), each worker's wait for the other
writers' locks (the worst worker and the sum over workers), and how many
connections each worker got. Every run is checked exact: per connection, the
rows of ``makini.purchase_orders`` equal the sandbox's count, with no
duplicate (connection_id, id).

PostgreSQL's ``makini`` and ``makini_staging*`` schemas in database ``test``
are dropped before every run: do not point it at data you keep
(``MAKINI_BENCH_POSTGRES`` overrides the URL). The test suite drops the same
schemas in the same database, so while tests run give the benchmark a database
of its own, e.g. ``MAKINI_BENCH_POSTGRES=postgresql://postgres:postgres@127.0.0.1:5432/makini_workers_bench``
(created beforehand), or a worker fails on a missing staging schema.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from makini_sandbox import Sandbox  # noqa: E402

POSTGRES_URL = os.environ.get("MAKINI_BENCH_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/test")
CONNECTIONS = 40
NOT_PAGES = ("connection", "sync-status")  # the sandbox's counter keys that are not list pages
SUMMARY = re.compile(r"^\s*pipeline (\S+): (\d+) connection\(s\); waited ([\d.]+) s for other writers", re.M)
OWN_SECONDS = re.compile(r"^makini sync into \S+: ([\d.]+) s", re.M)


@dataclass
class Worker:
    shard: str            # "3/4", or "all"
    seconds: float        # its own figure from the summary ("makini sync into postgres: 12.3 s")
    connections: int
    lock_wait: float


@dataclass
class Run:
    workers: int
    wall: float
    pages: int
    statuses: dict
    keys: list[str]       # what the sandbox's request counter filed the requests under
    fleet: list[Worker] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="comma-separated fleet sizes (default: 1,2,4)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per fleet size, alternating (default: 2)")
    parser.add_argument("--latency-ms", type=float, default=100, help="added to every API request (default: 100)")
    parser.add_argument("--purchase-orders", type=int, default=200,
                        help="per connection; the other entities are scaled from it (default: 200)")
    args = parser.parse_args()
    args.fleet_sizes = [int(n) for n in args.workers.split(",")]
    return args


def sandbox_sizes(purchase_orders: int) -> dict[str, int]:
    """The sandbox's own default proportions (makini_sandbox/entities.py), scaled to ``purchase_orders``."""
    scale = purchase_orders / 200
    return {"purchase-orders": purchase_orders, "work-orders": round(100 * scale), "assets": round(80 * scale),
            "inventory-items": round(120 * scale), "vendors": round(30 * scale)}


def reset_postgres() -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        schemas = [r[0] for r in conn.execute(  # every pipeline's own staging schema too
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'makini_staging%'")]
        for schema in ("makini", *schemas):
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def worker_command(k: int, n: int) -> list[str]:
    shard = ["--shard", f"{k}/{n}"] if n > 1 else []  # one worker: no --shard, all connections
    return [sys.executable, "-m", "pipelines.sync", "--destination", "postgres", *shard, "--no-progress"]


def worker_env(sandbox: Sandbox, data_dir: Path) -> dict:
    return {**os.environ, "DLT_DATA_DIR": str(data_dir), "SOURCES__MAKINI__BASE_URL": sandbox.base_url,
            "SOURCES__MAKINI__API_TOKEN": orjson.dumps(sandbox.tokens).decode(),
            "DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_URL}


def run_fleet(n: int, sandbox: Sandbox, workdir: Path) -> tuple[float, list[Worker]]:
    """Start N workers at once; wall seconds until the last one exits, and each one's summary."""
    logs, procs = [], []
    started = time.perf_counter()
    for k in range(1, n + 1):
        run_dir = Path(tempfile.mkdtemp(prefix=f"n{n}_k{k}_", dir=workdir))
        # files, not pipes: a full pipe would stall a worker while we wait on another
        out, err = open(run_dir / "stdout", "w+"), open(run_dir / "stderr", "w+")
        logs.append((out, err))
        procs.append(subprocess.Popen(worker_command(k, n), env=worker_env(sandbox, run_dir / "dlt"),
                                      stdout=out, stderr=err, cwd=REPO))
    codes = [proc.wait() for proc in procs]
    wall = time.perf_counter() - started
    fleet = []
    for k, (code, (out, err)) in enumerate(zip(codes, logs, strict=True), start=1):
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
        out.close(), err.close()
        shard = f"{k}/{n}" if n > 1 else "all"
        if code != 0:
            hint = (f"\n(a schema that does not exist mid-run: something else, the test suite say, dropped it in "
                    f"{POSTGRES_URL.rsplit('/', 1)[-1]}; see this script's docstring)") if "does not exist" in stderr else ""
            raise SystemExit(f"worker {shard} of {n} exited {code}; stderr tail:\n{stderr[-3000:]}\n"
                             f"stdout tail:\n{stdout[-1500:]}{hint}")
        fleet.append(parse_summary(shard, stdout))
    return wall, fleet


def parse_summary(shard: str, stdout: str) -> Worker:
    line, own = SUMMARY.search(stdout), OWN_SECONDS.search(stdout)
    if not line or not own:
        raise SystemExit(f"worker {shard}: no summary line with connections and lock wait in its output:\n{stdout}")
    return Worker(shard, float(own.group(1)), int(line.group(2)), float(line.group(3)))


def list_pages(served: dict) -> int:
    return sum(count for by_what in served["by_connection"].values()
               for what, count in by_what.items() if what not in NOT_PAGES)


def served_keys(served: dict) -> list[str]:
    return sorted({what for by_what in served["by_connection"].values() for what in by_what})


def check_exact(truth: dict[str, int]) -> None:
    """Rows of makini.purchase_orders per connection equal the sandbox's count; no duplicate keys."""
    import psycopg

    with psycopg.connect(POSTGRES_URL) as conn:
        rows = dict(conn.execute("SELECT connection_id, count(*) FROM makini.purchase_orders GROUP BY 1").fetchall())
        duplicates = conn.execute("SELECT count(*) FROM (SELECT 1 FROM makini.purchase_orders"
                                  " GROUP BY connection_id, id HAVING count(*) > 1) d").fetchone()[0]
    wrong = {c: (rows.get(c, 0), want) for c, want in truth.items() if rows.get(c, 0) != want}
    strays = set(rows) - set(truth)
    if wrong or duplicates or strays:
        raise SystemExit(f"result not exact: {len(wrong)} connection(s) with wrong row counts (rows, truth): "
                         f"{dict(list(wrong.items())[:5])}; {duplicates} duplicate (connection_id, id); "
                         f"unknown connections {sorted(strays)}")


def measure(n: int, sandbox: Sandbox, workdir: Path, truth: dict[str, int]) -> Run:
    reset_postgres()
    sandbox.control.requests_served(reset=True)
    wall, fleet = run_fleet(n, sandbox, workdir)
    served = sandbox.control.requests_served()
    check_exact(truth)
    if sum(w.connections for w in fleet) != len(truth):
        raise SystemExit(f"{n} worker(s) synced {sum(w.connections for w in fleet)} connections, not {len(truth)}")
    return Run(n, wall, list_pages(served), served["by_status"], served_keys(served), fleet)


def show_run(run: Run, baseline: Run | None) -> None:
    extra = f"{run.pages - baseline.pages:+d}" if baseline else "n/a"
    workers = ", ".join(f"{w.shard}: {w.connections} conn {w.seconds:.1f} s waited {w.lock_wait:.1f} s"
                        for w in run.fleet)
    print(f"  {run.workers} worker(s): wall {run.wall:6.2f} s, {run.pages} pages ({extra} vs one worker), "
          f"statuses {run.statuses}; {workers}", flush=True)


def show_table(runs: dict[int, list[Run]], baselines: list[Run | None]) -> None:
    one = statistics.median(r.wall for r in runs[1]) if 1 in runs else None
    print(f"\n{'workers':>7} {'wall s':>8} {'speed-up':>8} {'pages':>6} {'extra':>6} "
          f"{'max wait s':>10} {'sum wait s':>10}  connections per worker")
    for n, done in runs.items():
        wall = statistics.median(r.wall for r in done)
        pages = statistics.median(r.pages for r in done)
        extras = [r.pages - b.pages for r, b in zip(done, baselines, strict=True) if b]
        extra = f"{statistics.median(extras):+.0f}" if extras else "n/a"
        max_wait = statistics.median(max(w.lock_wait for w in r.fleet) for r in done)
        sum_wait = statistics.median(sum(w.lock_wait for w in r.fleet) for r in done)
        speed_up = f"{one / wall:.2f}x" if one else "n/a"
        shares = sorted({"+".join(str(w.connections) for w in r.fleet) for r in done})
        print(f"{n:>7} {wall:>8.2f} {speed_up:>8} {pages:>6.0f} {extra:>6} {max_wait:>10.1f} {sum_wait:>10.1f}  "
              f"{' | '.join(shares)}")


def main() -> None:
    args = parse_args()
    sizes = sandbox_sizes(args.purchase_orders)
    print("command: " + shlex.join([sys.executable, *sys.argv]))
    print(f"machine: {os.cpu_count()} CPU(s) (nproc {len(os.sched_getaffinity(0))}); "
          f"sandbox: {CONNECTIONS} connections x {sizes}, +{args.latency_ms:g} ms per API request; "
          f"PostgreSQL {POSTGRES_URL.rsplit('@', 1)[-1]}")
    runs: dict[int, list[Run]] = {n: [] for n in args.fleet_sizes}
    baselines: list[Run | None] = []  # the one-worker run of each round, for "extra pages"
    with tempfile.TemporaryDirectory() as tmp, Sandbox(seed=1, sizes=sizes, connections=CONNECTIONS, in_process=False,
                                                       rate_limit_per_minute=1_000_000) as sandbox:
        sandbox.control.set_faults(seed=1, slow_rate=1.0, slow_seconds=args.latency_ms / 1000)
        truth = {c["id"]: sandbox.control.truth(c["id"], "purchase-orders")["count"] for c in sandbox.connections}
        for round_number in range(args.rounds):
            print(f"round {round_number + 1}:", flush=True)
            done: dict[int, Run] = {}
            for n in args.fleet_sizes:
                done[n] = run = measure(n, sandbox, Path(tmp), truth)
                if round_number == 0 and len(done) == 1:
                    print(f"  (request keys the sandbox counted: {', '.join(run.keys)}; "
                          f"pages = all but {', '.join(NOT_PAGES)})")
                runs[n].append(run)
                show_run(run, done.get(1))
            baselines.append(done.get(1))
        show_table(runs, baselines)
    print(f"\nmedians of {args.rounds} round(s); every run exact: per connection, makini.purchase_orders rows equal "
          "the sandbox's count, no duplicate (connection_id, id)")


if __name__ == "__main__":
    main()
