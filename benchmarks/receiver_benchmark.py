"""Webhook receiver: durable acknowledgements/s against a no-op endpoint, and webhook-to-row latency.

    python benchmarks/receiver_benchmark.py [--seconds 10] [--connections 64] [--rate 1000]
    python benchmarks/receiver_benchmark.py --skip-visibility      # part 1 only
    python benchmarks/receiver_benchmark.py --skip-acks --destinations duckdb
    python benchmarks/receiver_benchmark.py --skip-acks --processor separate   # serve + process, two processes

Part 1 starts one receiver (``benchmarks/_noop_receiver.py serve``: the
production ``serve`` plus the no-op route; uvicorn, one process) and drives it
from a load generator in another process
(benchmarks/_http_load.py: raw asyncio sockets, requests signed beforehand)
over ``--connections`` keep-alive connections: first ``POST /webhooks/noop``
(read the body, answer 200), then ``POST /webhooks/makini`` (verify the
signature, append to the SQLite WAL inbox with group commit, answer 200).
Targets (issue 5): real/no-op >= 0.8 and p99 < 50 ms.

Part 2 starts ``serve --with-processor --destination NAME`` and sends
``record.created`` events at ``--rate`` events/s, each a new purchase order,
recording each send time; a row is visible when the processor marked its
event done in the inbox (``processed_at`` is set after the destination load
committed), and for PostgreSQL also when a poll of ``makini.purchase_orders``
first returns it. 100 warm-up events (the first batch creates the tables) are
processed before the clock starts. Target: p95 within 2 s at 1,000 events/s.

The machine is shared: each phase prints the CPU the receiver, the processor,
the generator and all other processes used, and warns when others were busy.

This prints figures; it asserts nothing. Missed targets are reported as missed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

import orjson

REPO = Path(__file__).resolve().parent.parent
LOAD = REPO / "benchmarks" / "_http_load.py"
NOOP_RECEIVER = REPO / "benchmarks" / "_noop_receiver.py"
POSTGRES_URL = "postgresql://postgres:postgres@127.0.0.1:5432/test"
ACK_RATIO_TARGET, ACK_P99_TARGET_MS, VISIBLE_P95_TARGET_S = 0.8, 50.0, 2.0

sys.path.insert(0, str(REPO))
from tests.webhook_support import new_secret  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(int(q / 100 * len(ordered)), len(ordered) - 1)]


def cpu_ticks(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) and its live children (the inbox writer), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            children.update(int(c) for c in (task / "children").read_text().split())
    return own + sum(cpu_ticks(child) for child in children if Path(f"/proc/{child}").exists())


def webhooks_cli(workdir: Path, secret: str, log_name: str, *args: str, noop: bool = False,
                 **env: str) -> subprocess.Popen:
    """``python -m pipelines.webhooks ARGS`` on ``workdir``'s inbox, output to ``workdir/log_name``.

    ``noop``: the same CLI through benchmarks/_noop_receiver.py, whose app also serves the no-op route."""
    cli = [str(NOOP_RECEIVER)] if noop else ["-m", "pipelines.webhooks"]
    with open(workdir / log_name, "ab") as log:
        return subprocess.Popen(
            [sys.executable, *cli, "--inbox", str(workdir / "inbox.sqlite"), "--log-level", "WARNING", *args],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "SOURCES__MAKINI__WEBHOOK_SECRET": secret, "DLT_DATA_DIR": str(workdir / "dlt"),
                 "RUNTIME__LOG_LEVEL": "WARNING",
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), **env},
        )


def stop(proc: subprocess.Popen, log: Path) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    errors = log.read_text()
    if "Traceback" in errors or " ERROR " in errors:
        print(f"  ! {log.name} has errors (last lines):\n{errors[-1500:]}")


@contextlib.contextmanager
def serve(workdir: Path, secret: str, *args: str, noop: bool = False,
          **env: str) -> Iterator[tuple[int, subprocess.Popen]]:
    port = free_port()
    proc = webhooks_cli(workdir, secret, f"serve-{port}.log", "serve", "--port", str(port), *args, noop=noop, **env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"receiver did not start:\n{(workdir / f'serve-{port}.log').read_text()[-3000:]}")
            time.sleep(0.1)
        if noop:  # without the route the baseline would be measured on 404s
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{port}/webhooks/noop", data=b"{}", method="POST"), timeout=5).close()
            except urllib.error.HTTPError as exc:
                raise SystemExit(f"POST /webhooks/noop answered {exc.code}: the no-op route is missing") from None
        yield port, proc
    finally:
        stop(proc, workdir / f"serve-{port}.log")


def busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: user nice system irq softirq steal)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]) / os.sysconf("SC_CLK_TCK")


def load(spec: dict, server_pid: int, processor_pid: Optional[int] = None) -> dict:
    """Run the generator; add the CPU the server, the generator and everything else used while it ran."""
    gen = subprocess.Popen([sys.executable, str(LOAD), orjson.dumps(spec).decode()],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if gen.stdout.readline() != b"ready\n":
        gen.kill()
        raise SystemExit(f"load generator failed:\n{gen.stderr.read().decode()[-3000:]}")
    server_from, busy_from = cpu_ticks(server_pid), busy_seconds()
    processor_from = cpu_ticks(processor_pid) if processor_pid else 0.0
    out, err = gen.communicate(b"go\n", timeout=600)
    server_cpu, busy = cpu_ticks(server_pid) - server_from, busy_seconds() - busy_from
    processor_cpu = cpu_ticks(processor_pid) - processor_from if processor_pid else 0.0
    if gen.returncode != 0:
        raise SystemExit(f"load generator failed:\n{err.decode()[-3000:]}")
    result = orjson.loads(out)
    wall = result["run_wall_s"]
    result["cpu_share"] = {  # of one core, over the run (warm-up and final answers included)
        "server": server_cpu / wall, "generator": result["run_cpu_s"] / wall, "processor": processor_cpu / wall,
        "others": max(busy - server_cpu - processor_cpu - result["run_cpu_s"], 0.0) / wall,
    }
    return result


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# --- part 1: durable acknowledgements per second ---------------------------------------------------------------


def acks(args: argparse.Namespace) -> None:
    """No-op and durable endpoints in alternating rounds on one server; medians compared.

    Alternating rounds (no-op first in odd rounds, real first in even ones)
    because this machine's speed drifts by 10-20% from one half-minute to the
    next: one long run of each put the drift into the ratio."""
    secret = new_secret()
    http = "httptools" if importlib.util.find_spec("httptools") else "h11 (pure Python; httptools not installed)"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio (uvloop not installed)"
    print(f"== durable acknowledgements: {args.connections} keep-alive connections, {args.rounds} alternating rounds "
          f"of {args.warmup:g} s warm-up + {args.seconds:g} s per endpoint, one receiver process (+ its inbox writer)")
    print(f"   uvicorn: HTTP parser {http}, event loop {loop}")
    endpoints = {"no-op": ("/webhooks/noop", False), "real": ("/webhooks/makini", True)}
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="receiver-bench-") as tmp, \
            serve(Path(tmp), secret, noop=True) as (port, proc):
        for number in range(1, args.rounds + 1):
            results = {}
            for name in (["no-op", "real"] if number % 2 else ["real", "no-op"]):
                path, unique = endpoints[name]
                spec = {"mode": "closed", "host": "127.0.0.1", "port": port, "path": path, "secret": secret,
                        "connections": args.connections, "seconds": args.seconds, "warmup": args.warmup,
                        "unique": unique, "count": int((args.seconds + args.warmup) * args.max_rate),
                        "id_prefix": f"ack-{name}-{number}"}
                results[name] = result = load(spec, proc.pid)
                if result["exhausted"]:
                    print(f"  ! {name}: the generator ran out of pre-built requests; rerun with a higher --max-rate")
            rounds.append(results)
        with contextlib.closing(sqlite3.connect(Path(tmp) / "inbox.sqlite")) as db:
            stored = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    print(f"   {'round':<7}{'endpoint':<32}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'non-200':>9}"
          f"   CPU (% of one core): server (loop + inbox writer) / generator / other processes")
    for number, results in enumerate(rounds, 1):
        for name, label in (("no-op", "no-op (read body, 200)"), ("real", "real (verify + durable append)")):
            r = results[name]
            non_200 = sum(v for k, v in r["statuses"].items() if k != "200")
            print(f"   {number:<7}{label:<32}{r['answered'] / r['seconds']:>8.0f}"
                  f"{percentile(r['latencies_ms'], 50):>9.1f}{percentile(r['latencies_ms'], 99):>9.1f}{non_200:>9}"
                  f"   {r['cpu_share']['server']:.0%} / {r['cpu_share']['generator']:.0%} / "
                  f"{r['cpu_share']['others']:.0%}")
    rate = {name: statistics.median(r[name]["answered"] / r[name]["seconds"] for r in rounds) for name in endpoints}
    ratios = [r["real"]["answered"] / r["real"]["seconds"] / (r["no-op"]["answered"] / r["no-op"]["seconds"])
              for r in rounds]
    ratio = rate["real"] / rate["no-op"]
    latencies = [ms for r in rounds for ms in r["real"]["latencies_ms"]]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(f"   median req/s: no-op {rate['no-op']:.0f}, real {rate['real']:.0f}; per-round ratios "
          f"{', '.join(f'{x:.2f}' for x in ratios)}")
    print(f"   ratio real/no-op (medians): {ratio:.2f}  (target >= {ACK_RATIO_TARGET}: "
          f"{verdict(ratio >= ACK_RATIO_TARGET)})")
    print(f"   real, all rounds: p50 {p50:.1f} ms, p99 {p99:.1f} ms  (target p99 < {ACK_P99_TARGET_MS:.0f} ms: "
          f"{verdict(p99 < ACK_P99_TARGET_MS)})")
    sent = sum(r["real"]["sent_total"] for r in rounds)
    print(f"   inbox holds {stored} events; the generator sent {sent} unique signed requests "
          f"to the real endpoint (warm-ups included){'' if stored == sent else '  ! MISMATCH'}")
    others = max(r[name]["cpu_share"]["others"] for r in rounds for name in endpoints)
    if others > 0.15:
        print(f"   ! other processes used up to {others:.0%} of a core during these runs: the figures are low;"
              " rerun on a quiet machine")


# --- part 2: webhook to row visible ---------------------------------------------------------------------------


class TablePoller(threading.Thread):
    """Polls ``makini.purchase_orders`` and notes when each PO id is first seen (wall clock)."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                try:
                    ids = conn.execute(
                        "SELECT id FROM makini.purchase_orders WHERE connection_id = 'conn_vis'").fetchall()
                except psycopg.errors.UndefinedTable:
                    ids = []
                now = time.time()
                for (po_id,) in ids:
                    self.seen.setdefault(po_id, now)
                self.stop.wait(self.interval)


def reset_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        staging = [r[0] for r in conn.execute(  # every pipeline's own staging too
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'makini_staging%'")]
        for schema in ("makini", *staging):
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def wait_processed(inbox: Path, ids: list[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    with contextlib.closing(sqlite3.connect(inbox, timeout=30)) as db:
        while True:
            rows = db.execute("SELECT webhook_id, processed_at FROM events WHERE status = 'done'").fetchall()
            done = dict(rows)
            if all(i in done for i in ids) or time.monotonic() > deadline:
                return done
            time.sleep(0.2)


def visibility(args: argparse.Namespace, destination: str) -> list[tuple[str, list[float], int]]:
    secret = new_secret()
    count = int(args.rate * args.visibility_seconds)
    env = {}
    poller: Optional[TablePoller] = None
    with tempfile.TemporaryDirectory(prefix="receiver-vis-") as tmp:
        workdir = Path(tmp)
        if destination == "duckdb":
            env["DESTINATION__DUCKDB__CREDENTIALS"] = str(workdir / "w.duckdb")
        else:
            url = os.environ.get("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
            env["DESTINATION__POSTGRES__CREDENTIALS"] = url
            reset_postgres(url)
        in_process = args.processor == "in-process"
        serve_args = ("--with-processor", "--destination", destination) if in_process else ()
        with serve(workdir, secret, *serve_args, **env) as (port, proc):
            processor = None if in_process else webhooks_cli(
                workdir, secret, "process.log", "process", "--destination", destination, **env)
            if destination == "postgres":
                poller = TablePoller(env["DESTINATION__POSTGRES__CREDENTIALS"], args.poll_interval)
                poller.start()
            spec = {"mode": "paced", "host": "127.0.0.1", "port": port, "path": "/webhooks/makini", "secret": secret,
                    "connections": args.connections, "rate": 100, "count": 100, "unique": True,
                    "id_prefix": f"warm-{destination}", "connection_id": "conn_warm"}
            warm = load(spec, proc.pid)  # the first batch creates the tables: not steady state, not measured
            wait_processed(workdir / "inbox.sqlite", [e[0] for e in warm["events"]], timeout=args.drain_timeout)
            spec.update(rate=args.rate, count=count, id_prefix=f"vis-{destination}", connection_id="conn_vis")
            result = load(spec, proc.pid, processor.pid if processor else None)
            events = result["events"]
            acked = [e for e in events if e[3] == 200]
            done = wait_processed(workdir / "inbox.sqlite", [e[0] for e in acked], timeout=args.drain_timeout)
            if poller is not None:
                po_ids = {e[0]: e[0].replace(f"vis-{destination}-", f"vis-{destination}-po-") for e in acked}
                deadline = time.monotonic() + 10
                while not all(po_ids[e[0]] in poller.seen for e in acked) and time.monotonic() < deadline:
                    time.sleep(0.2)
                poller.stop.set()
                poller.join()
            if processor is not None:
                stop(processor, workdir / "process.log")
        rows_in_table = None
        if destination == "duckdb":
            import duckdb

            with duckdb.connect(str(workdir / "w.duckdb"), read_only=True) as db:
                rows_in_table = db.execute(
                    "SELECT COUNT(*) FROM makini.purchase_orders WHERE connection_id = 'conn_vis'").fetchone()[0]
    ack_ms = [(e[2] - e[1]) * 1000 for e in acked]
    share = result["cpu_share"]
    cpu = (f"receiver+processor {share['server']:.0%}" if in_process
           else f"receiver {share['server']:.0%}, processor {share['processor']:.0%}")
    print(f"   {destination}: sent {len(events)} events in {result['send_seconds']:.2f} s "
          f"({len(events) / result['send_seconds']:.0f}/s;"
          f" worst dispatch lag {result['max_dispatch_lag_s'] * 1000:.0f} ms),"
          f" {len(acked)} answered 200, ack p50 {percentile(ack_ms, 50):.1f} ms p99 {percentile(ack_ms, 99):.1f} ms;"
          f" CPU while sending, % of one core: {cpu}, generator {share['generator']:.0%},"
          f" other processes {share['others']:.0%}")
    if result["cpu_share"]["others"] > 0.15:
        print(f"   ! other processes used {result['cpu_share']['others']:.0%} of a core while sending: the figures are"
              " pessimistic; rerun on a quiet machine")
    offered = len(events) / result["send_seconds"]
    if offered < 0.95 * args.rate:
        print(f"   ! {destination}: the offered rate {args.rate:g}/s was NOT reached ({offered:.0f}/s): the receiver"
              f" answered too slowly for {args.connections} connections to keep up")
    batches: dict[float, int] = {}
    for e in acked:
        if e[0] in done:
            batches[done[e[0]]] = batches.get(done[e[0]], 0) + 1
    stamps = sorted(batches)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    print(f"   {destination}: processor committed these events in {len(batches)} batches (by processed_at), "
          f"sizes {sorted(batches.values())}, {percentile(gaps, 50):.2f} s median between batch commits")
    series = [(f"{destination} (inbox processed_at)",
               [done[e[0]] - e[1] for e in acked if e[0] in done], len(acked) - sum(e[0] in done for e in acked))]
    if rows_in_table is not None:
        print(f"   {destination}: makini.purchase_orders holds {rows_in_table} of the {len(acked)} purchase orders")
    if poller is not None:
        seen = [poller.seen[po_ids[e[0]]] - e[1] for e in acked if po_ids[e[0]] in poller.seen]
        series.append((f"{destination} (table poll, {args.poll_interval * 1000:.0f} ms)", seen, len(acked) - len(seen)))
    return series


def visibilities(args: argparse.Namespace) -> None:
    how = ("serve --with-processor (receiver and processor in one process)" if args.processor == "in-process"
           else "serve and process as two processes")
    print(f"\n== webhook -> row visible: record.created at {args.rate:g} events/s for {args.visibility_seconds:g} s, "
          f"one new purchase order each, {how}")
    print("   clock: wall clock (time.time) of this host for both ends; send time = when the generator wrote the"
          " request; visible = the inbox's processed_at (set by the processor after the destination load committed)"
          " or, for PostgreSQL, the first poll of makini.purchase_orders that returned the row")
    series = []
    for destination in args.destinations.split(","):
        series += visibility(args, destination)
    print(f"   {'measured as':<38}{'events':>8}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}{'max s':>8}{'missing':>9}"
          "  p95 <= 2 s")
    for label, latencies, missing in series:
        p95 = percentile(latencies, 95)
        print(f"   {label:<38}{len(latencies):>8}{percentile(latencies, 50):>8.2f}{p95:>8.2f}"
              f"{percentile(latencies, 99):>8.2f}{max(latencies, default=float('nan')):>8.2f}{missing:>9}"
              f"  {verdict(p95 <= VISIBLE_P95_TARGET_S and not missing)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per endpoint and round (part 1)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both endpoints (part 1)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each (part 1)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-rate", type=int, default=16000,
                        help="requests pre-built per second of part 1 (the generator stops if it runs out)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s for part 2")
    parser.add_argument("--visibility-seconds", type=float, default=5.0, help="seconds of sending in part 2")
    parser.add_argument("--destinations", default="duckdb,postgres")
    parser.add_argument("--poll-interval", type=float, default=0.1, help="PostgreSQL table poll interval, seconds")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--processor", choices=["in-process", "separate"], default="in-process",
                        help="part 2: serve --with-processor (default), or serve + process as two processes")
    parser.add_argument("--skip-acks", action="store_true")
    parser.add_argument("--skip-visibility", action="store_true")
    args = parser.parse_args()
    usable = len(os.sched_getaffinity(0))
    print(f"machine: {os.cpu_count()} CPU cores ({usable} usable); the load generator is a separate process"
          f" sharing these cores with the receiver")
    if not args.skip_acks:
        acks(args)
    if not args.skip_visibility:
        visibilities(args)


if __name__ == "__main__":
    main()
