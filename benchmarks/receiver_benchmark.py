"""Webhook receiver with its inbox in SQLite and on NATS JetStream: durable acknowledgements/s against a
no-op endpoint, and webhook-to-row latency.

    python benchmarks/receiver_benchmark.py [--seconds 5] [--rounds 3] [--connections 64] [--rate 1000]
    python benchmarks/receiver_benchmark.py --skip-visibility                    # part 1 only
    python benchmarks/receiver_benchmark.py --inbox jetstream --receivers 1,2 --skip-visibility
    python benchmarks/receiver_benchmark.py --inbox sqlite --skip-acks --destinations duckdb
    python benchmarks/receiver_benchmark.py --inbox sqlite --skip-acks --processor separate   # serve + process
    python benchmarks/receiver_benchmark.py --inbox jetstream --skip-acks --processors 2

``--inbox`` (default ``sqlite,jetstream``) picks the inboxes; ``--receivers``
(default ``1,2``) how many JetStream receivers part 1 measures (the SQLite
inbox is one file, so one receiver).

Part 1 starts the receivers (``benchmarks/_noop_receiver.py serve``: the
production ``serve`` plus the no-op route; uvicorn, one process each): one on
a SQLite inbox and as many as the largest ``--receivers`` on one JetStream
stream, each on its own port. A load generator in another process
(benchmarks/_http_load.py: raw asyncio sockets, requests signed beforehand)
drives them over ``--connections`` keep-alive connections, spread evenly over
the receivers of the variant it measures:

    no-op xN      POST /webhooks/noop on N receivers: read the body, answer 200 (the baseline;
                  the first N JetStream receivers, or the SQLite one without JetStream: the
                  route is the same whatever the inbox)
    sqlite        POST /webhooks/makini: the inbox writer process verifies and appends
                  (SQLite WAL, group commit); 200 after the commit
    jetstream xN  POST /webhooks/makini on N receivers: verify on the event loop, publish;
                  200 after JetStream acknowledged it

Every round runs every variant, in reverse order every other round, and the
medians of the rounds are compared. Targets: sqlite/no-op >= 0.8 (issue 5);
one JetStream receiver at least the SQLite inbox's acks/s; p99 < 50 ms. Two
receivers share the machine's cores (2 here) with each other, the broker and
the generator, so their figure shows the overhead of a second process, not
scale; it is reported as measured, beside the no-op endpoint on two.
Afterwards each store is counted against the requests sent (the stream is
purged after each JetStream variant).

Part 2 sends ``record.created`` events at ``--rate`` events/s to one
receiver, each a new purchase order, recording each send time, after 100
warm-up events (the first batch creates the tables) were processed.
SQLite inbox, for each of ``--destinations``: ``serve --with-processor``
(or, with ``--processor separate``, ``serve`` and ``process``); a row is
visible when the processor marked its event done in the inbox
(``processed_at``, set after the destination load committed), and for
PostgreSQL also when a poll of ``makini.purchase_orders`` first returns it.
JetStream inbox, PostgreSQL only: ``serve`` and ``--processors`` (2)
``process --destination postgres`` processes sharing the stream's consumer;
the stream keeps no processed time, so a row is visible when a poll of
``makini.purchase_orders`` first returns it. Target: p95 within 2 s at
1,000 events/s.

Each JetStream run gets a stream of its own, ``bench_<pid>_<n>`` (its
dead-letter stream, ledger and consumer are named after it), deleted
afterwards, on ``MAKINI_TEST_NATS`` (default nats://127.0.0.1:4222). Each
PostgreSQL run gets a database of its own, ``receiver_bench_<pid>_<n>``, on
the server of DESTINATION__POSTGRES__CREDENTIALS (default
postgresql://postgres:postgres@127.0.0.1:5432/test), dropped afterwards: the
processor's dataset is always ``makini``, and the test suite drops that
schema in ``test``.

The machine is shared: each phase prints the CPU the receivers, the
processors, the broker (nats-server), the generator and all other processes
used (PostgreSQL's server among them in part 2), and warns when others were busy.

This prints figures; it asserts nothing. Missed targets are reported as missed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from _receivers import (  # first: it puts the repository on sys.path
    POSTGRES_URL, Site, bench_stream, load, percentile, private_database, running, serve, stream_messages,
    stream_url, verdict, warn_if_busy,
)
from makini_sync.webhooks.jetstream_inbox import JetStreamInbox
from tests.jetstream_support import with_js
from tests.webhook_support import new_secret

ACK_RATIO_TARGET, ACK_P99_TARGET_MS, VISIBLE_P95_TARGET_S = 0.8, 50.0, 2.0
INBOXES = ("sqlite", "jetstream")


# --- part 1: durable acknowledgements per second ---------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    store: str  # "no-op", "sqlite" or "jetstream"
    receivers: int

    @property
    def name(self) -> str:
        return "sqlite" if self.store == "sqlite" else f"{self.store} x{self.receivers}"

    @property
    def label(self) -> str:
        return {"no-op": "(read body, 200)", "sqlite": "(verify + durable append)",
                "jetstream": "(verify + publish, acked)"}[self.store]


def ack_variants(inboxes: Sequence[str], receivers: Sequence[int]) -> list[Variant]:
    """no-op x1, sqlite, jetstream x1, no-op x2, jetstream x2, ... as chosen."""
    on_jetstream = receivers if "jetstream" in inboxes else []
    variants = []
    for n in sorted({1, *on_jetstream}):
        variants.append(Variant("no-op", n))
        if n == 1 and "sqlite" in inboxes:
            variants.append(Variant("sqlite", 1))
        if n in on_jetstream:
            variants.append(Variant("jetstream", n))
    return variants


def acks(args: argparse.Namespace) -> None:
    """Every variant in each round, alternating the order; medians compared.

    Alternating rounds (one order in odd rounds, the reverse in even ones)
    because this machine's speed drifts by 10-20% from one half-minute to the
    next: one long run of each put the drift into the ratios."""
    secret = new_secret()
    variants = ack_variants(args.inbox, args.receivers)
    jetstream_receivers = max((v.receivers for v in variants if v.store == "jetstream"), default=0)
    http = "httptools" if importlib.util.find_spec("httptools") else "h11 (pure Python; httptools not installed)"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio (uvloop not installed)"
    print(f"== durable acknowledgements: {args.connections} keep-alive connections (spread over the variant's "
          f"receivers), {args.rounds} alternating rounds of {args.warmup:g} s warm-up + {args.seconds:g} s per "
          "variant; each receiver one process (+ the SQLite inbox writer)")
    print(f"   uvicorn: HTTP parser {http}, event loop {loop}")
    rounds: list[dict[str, dict]] = []
    stored: dict[str, list[tuple[int, int]]] = {v.name: [] for v in variants}  # (stored, sent) per round
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="receiver-bench-")))
        pools: dict[str, list[tuple[int, subprocess.Popen]]] = {}
        sqlite_file = workdir / "inbox.sqlite"
        if "sqlite" in args.inbox:
            pools["sqlite"] = [stack.enter_context(serve(Site(workdir, secret, str(sqlite_file)), noop=True))]
        stream = None
        if jetstream_receivers:
            stream = stack.enter_context(bench_stream())
            site = Site(workdir, secret, stream_url(stream))
            pools["jetstream"] = [stack.enter_context(serve(site, noop=True)) for _ in range(jetstream_receivers)]
            print(f"   JetStream: stream {stream.stream} on {stream.server}, {jetstream_receivers} receiver(s)")
        pools["no-op"] = pools.get("jetstream") or pools["sqlite"]  # the same no-op route whatever the inbox
        for number in range(1, args.rounds + 1):
            results = {}
            for variant in (variants if number % 2 else variants[::-1]):
                receivers = pools[variant.store][:variant.receivers]
                unique = variant.store != "no-op"
                spec = {"mode": "closed", "host": "127.0.0.1", "ports": [port for port, _ in receivers],
                        "path": "/webhooks/makini" if unique else "/webhooks/noop", "secret": secret,
                        "connections": args.connections, "seconds": args.seconds, "warmup": args.warmup,
                        "unique": unique, "count": int((args.seconds + args.warmup) * args.max_rate),
                        "id_prefix": f"ack-{variant.store}-{variant.receivers}-{number}"}
                before = sqlite_count(sqlite_file) if variant.store == "sqlite" else 0
                results[variant.name] = result = load(spec, [proc.pid for _, proc in receivers])
                if variant.store == "sqlite":
                    stored[variant.name].append((sqlite_count(sqlite_file) - before, result["sent_total"]))
                elif variant.store == "jetstream" and stream is not None:
                    stored[variant.name].append((stream_messages(stream, purge=True), result["sent_total"]))
                if result["exhausted"]:
                    print(f"  ! {variant.name}: the generator ran out of pre-built requests; rerun with a higher"
                          " --max-rate")
            rounds.append(results)
    print_acks(variants, rounds, stored)


def sqlite_count(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]


def print_acks(variants: list[Variant], rounds: list[dict[str, dict]],
               stored: dict[str, list[tuple[int, int]]]) -> None:
    print(f"   {'round':<7}{'variant':<40}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'non-200':>9}"
          "   CPU (% of one core): receivers / broker / generator / other processes")
    for number, results in enumerate(rounds, 1):
        for variant in variants:
            r = results[variant.name]
            non_200 = sum(v for k, v in r["statuses"].items() if k != "200")
            share = r["cpu_share"]
            print(f"   {number:<7}{variant.name + ' ' + variant.label:<40}{r['answered'] / r['seconds']:>8.0f}"
                  f"{percentile(r['latencies_ms'], 50):>9.1f}{percentile(r['latencies_ms'], 99):>9.1f}{non_200:>9}"
                  f"   {share['server']:.0%} / {share['broker']:.0%} / {share['generator']:.0%} / "
                  f"{share['others']:.0%}")

    def per_second(name: str) -> list[float]:
        return [r[name]["answered"] / r[name]["seconds"] for r in rounds]

    def latencies(name: str) -> str:
        values = [ms for r in rounds for ms in r[name]["latencies_ms"]]
        p99 = percentile(values, 99)
        return (f"p50 {percentile(values, 50):.1f} ms, p99 {p99:.1f} ms (target p99 < {ACK_P99_TARGET_MS:.0f} ms: "
                f"{verdict(p99 < ACK_P99_TARGET_MS)})")

    def ratios(name: str, to: str) -> tuple[float, str]:
        """The ratio of the medians, and the per-round ratios as text."""
        each = [a / b for a, b in zip(per_second(name), per_second(to), strict=True)]
        return statistics.median(per_second(name)) / statistics.median(per_second(to)), \
            ", ".join(f"{x:.2f}" for x in each)

    rate = {v.name: statistics.median(per_second(v.name)) for v in variants}
    print(f"   median req/s: {', '.join(f'{name} {value:.0f}' for name, value in rate.items())}")
    for variant in variants:
        name = variant.name
        if variant.store == "no-op":
            continue
        baseline = f"no-op x{variant.receivers}"
        to_noop, each = ratios(name, baseline)
        line = f"   {name}: {rate[name]:.0f} acks/s; /{baseline} {to_noop:.2f} (rounds {each})"
        if name == "sqlite":
            line += f" (target >= {ACK_RATIO_TARGET}: {verdict(to_noop >= ACK_RATIO_TARGET)})"
        elif "sqlite" in rate:
            to_sqlite, each = ratios(name, "sqlite")
            line += f"; /sqlite {to_sqlite:.2f} (rounds {each})"
            if variant.receivers == 1:
                line += f" (target >= 1.00: {verdict(to_sqlite >= 1.0)})"
        if variant.store == "jetstream" and variant.receivers > 1:
            if "jetstream x1" in rate:
                line += f"; /jetstream x1 {ratios(name, 'jetstream x1')[0]:.2f}"
            line += (f" (as measured: {variant.receivers} receivers on {len(os.sched_getaffinity(0))} cores show "
                     "overhead, not scale)")
        print(line)
        print(f"   {' ' * len(name)}  {latencies(name)}")
    counts = ", ".join(f"{name} {sum(s for s, _ in kept)} of {sum(n for _, n in kept)}"
                       + ("" if all(s == n for s, n in kept) else " ! MISMATCH")
                       for name, kept in stored.items() if kept)
    print(f"   stored / unique signed requests sent (warm-ups included): {counts}")
    warn_if_busy([r[v.name]["cpu_share"] for r in rounds for v in variants], "during these runs")


# --- part 2: webhook to row visible ---------------------------------------------------------------------------


class TablePoller(threading.Thread):
    """Polls ``makini.purchase_orders`` and notes when each PO id is first seen (wall clock)."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.seen: dict[str, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.halt.is_set():
                try:
                    ids = conn.execute("SELECT id FROM makini.purchase_orders").fetchall()
                except psycopg.errors.UndefinedTable:
                    ids = []
                now = time.time()
                for (po_id,) in ids:
                    self.seen.setdefault(po_id, now)
                self.halt.wait(self.interval)

    def wait(self, po_ids: list[str], timeout: float) -> dict[str, float]:
        """When each PO id was first seen, once all were seen (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not all(p in self.seen for p in po_ids) and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.2)
        return dict(self.seen)

    def close(self) -> None:
        self.halt.set()
        self.join()


def po_id(webhook_id: str) -> str:
    """The purchase order a generated event creates (``_http_load.build_requests``: PREFIX-i -> PREFIX-po-i)."""
    prefix, _, number = webhook_id.rpartition("-")
    return f"{prefix}-po-{number}"


def wait_processed(inbox: Path, ids: list[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    with contextlib.closing(sqlite3.connect(inbox, timeout=30)) as db:
        while True:
            rows = db.execute("SELECT webhook_id, processed_at FROM events WHERE status = 'done'").fetchall()
            done = dict(rows)
            if all(i in done for i in ids) or time.monotonic() > deadline:
                return done
            time.sleep(0.2)


def wait_fetching(inbox: JetStreamInbox, processors: int, timeout: float) -> bool:
    """Until ``processors`` pull requests wait on the consumer at once: every processor is up and fetching."""
    from nats.js.errors import NotFoundError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(NotFoundError):
            info = with_js(lambda js: js.consumer_info(inbox.stream, inbox.consumer))
            if (info.num_waiting or 0) >= processors:
                return True
        time.sleep(0.1)
    return False


Series = tuple[str, list[float], int]  # label, seconds from send to visible, events never seen


def visibility(args: argparse.Namespace, store: str, destination: str) -> list[Series]:
    secret = new_secret()
    count = int(args.rate * args.visibility_seconds)
    prefix = f"vis-{store}-{destination}"
    with contextlib.ExitStack() as run:  # what outlives the processes: files, database, stream
        workdir = Path(run.enter_context(tempfile.TemporaryDirectory(prefix="receiver-vis-")))
        env = {}
        if destination == "duckdb":
            env["DESTINATION__DUCKDB__CREDENTIALS"] = str(workdir / "w.duckdb")
        else:
            env["DESTINATION__POSTGRES__CREDENTIALS"] = run.enter_context(private_database(POSTGRES_URL))
        stream = run.enter_context(bench_stream()) if store == "jetstream" else None
        sqlite_file = workdir / "inbox.sqlite"
        site = Site(workdir, secret, stream_url(stream) if stream else str(sqlite_file), env)
        in_process = store == "sqlite" and args.processor == "in-process"
        processes = 0 if in_process else (args.processors if stream else 1)
        with contextlib.ExitStack() as procs:
            serve_args = ("--with-processor", "--destination", destination) if in_process else ()
            port, receiver = procs.enter_context(serve(site, *serve_args))
            processors = [procs.enter_context(running(  # each its own dlt data dir, as on hosts of their own
                site.with_env(DLT_DATA_DIR=str(workdir / f"dlt-{k}")), f"process-{k}.log",
                "process", "--destination", destination)) for k in range(processes)]
            poller = None
            if destination == "postgres":
                poller = TablePoller(env["DESTINATION__POSTGRES__CREDENTIALS"], args.poll_interval)
                poller.start()
                procs.callback(poller.close)
            spec = {"mode": "paced", "host": "127.0.0.1", "ports": [port], "path": "/webhooks/makini",
                    "secret": secret, "connections": args.connections, "rate": 100, "count": 100, "unique": True,
                    "id_prefix": f"warm-{store}-{destination}", "connection_id": "conn_warm"}
            warm = load(spec, [receiver.pid])  # the first batch creates the tables: not steady state, not measured
            warm_ids = [e[0] for e in warm["events"]]
            if stream is not None and poller is not None:
                poller.wait([po_id(w) for w in warm_ids], timeout=args.drain_timeout)
                if not wait_fetching(stream, processes, timeout=60):
                    print(f"   ! not all {processes} processors were fetching from {stream.stream} after 60 s")
            else:
                wait_processed(sqlite_file, warm_ids, timeout=args.drain_timeout)
            spec.update(rate=args.rate, count=count, id_prefix=prefix, connection_id="conn_vis")
            result = load(spec, [receiver.pid], [p.pid for p in processors])
            events = result["events"]
            acked = [e for e in events if e[3] == 200]
            done = None if stream else wait_processed(sqlite_file, [e[0] for e in acked], timeout=args.drain_timeout)
            seen = poller.wait([po_id(e[0]) for e in acked], args.drain_timeout if stream else 10) if poller else {}
            left = stream_messages(stream) if stream else 0
        rows_in_table = None
        if destination == "duckdb":
            import duckdb

            with duckdb.connect(str(workdir / "w.duckdb"), read_only=True) as db:
                found = db.execute(
                    "SELECT COUNT(*) FROM makini.purchase_orders WHERE connection_id = 'conn_vis'").fetchone()
                rows_in_table = found[0] if found else 0
    name = f"{store} -> {destination}"
    ack_ms = [(e[2] - e[1]) * 1000 for e in acked]
    share = result["cpu_share"]
    cpu = (f"receiver+processor {share['server']:.0%}" if in_process
           else f"receiver {share['server']:.0%}, {processes} processor(s) {share['processor']:.0%}")
    if stream:
        cpu += f", broker {share['broker']:.0%}"
    print(f"   {name}: sent {len(events)} events in {result['send_seconds']:.2f} s "
          f"({len(events) / result['send_seconds']:.0f}/s;"
          f" worst dispatch lag {result['max_dispatch_lag_s'] * 1000:.0f} ms),"
          f" {len(acked)} answered 200, ack p50 {percentile(ack_ms, 50):.1f} ms p99 {percentile(ack_ms, 99):.1f} ms;"
          f" CPU while sending, % of one core: {cpu}, generator {share['generator']:.0%},"
          f" other processes {share['others']:.0%}")
    warn_if_busy([share], "while sending")
    offered = len(events) / result["send_seconds"]
    if offered < 0.95 * args.rate:
        print(f"   ! {name}: the offered rate {args.rate:g}/s was NOT reached ({offered:.0f}/s): the receiver"
              f" answered too slowly for {args.connections} connections to keep up")
    series: list[Series] = []
    if done is not None:
        print_batches(name, "processor committed these events", "by processed_at",
                      [done[e[0]] for e in acked if e[0] in done])
        series.append((f"{name} (inbox processed_at)", [done[e[0]] - e[1] for e in acked if e[0] in done],
                       len(acked) - sum(e[0] in done for e in acked)))
    if rows_in_table is not None:
        print(f"   {name}: makini.purchase_orders holds {rows_in_table} of the {len(acked)} purchase orders")
    if poller is not None:
        visible = [seen[po_id(e[0])] - e[1] for e in acked if po_id(e[0]) in seen]
        if stream:
            print_batches(name, "rows appeared", f"polls {args.poll_interval * 1000:.0f} ms apart",
                          [seen[po_id(e[0])] for e in acked if po_id(e[0]) in seen])
            print(f"   {name}: {left} message(s) left in stream {stream.stream} after the drain")
        how = f"{processes} processors, " if stream else ""
        series.append((f"{name} ({how}table poll, {args.poll_interval * 1000:.0f} ms)", visible,
                       len(acked) - len(visible)))
    return series


def print_batches(name: str, what: str, how: str, stamps: list[float]) -> None:
    """How the events were grouped by the time they became visible."""
    sizes: dict[float, int] = {}
    for stamp in stamps:
        sizes[stamp] = sizes.get(stamp, 0) + 1
    ordered = sorted(sizes)
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    print(f"   {name}: {what} in {len(sizes)} batches ({how}), sizes {sorted(sizes.values())}, "
          f"{percentile(gaps, 50):.2f} s median between them")


def visibilities(args: argparse.Namespace) -> None:
    runs = [("sqlite", d) for d in args.destinations if "sqlite" in args.inbox]
    if "jetstream" in args.inbox:
        if "postgres" in args.destinations:
            runs.append(("jetstream", "postgres"))
        else:
            print("\n(JetStream part 2 measures PostgreSQL only, which --destinations leaves out)")
    if not runs:
        return
    sqlite_how = ("serve --with-processor (receiver and processor in one process)" if args.processor == "in-process"
                  else "serve and process as two processes")
    print(f"\n== webhook -> row visible: record.created at {args.rate:g} events/s for {args.visibility_seconds:g} s, "
          "one new purchase order each, to one receiver")
    print(f"   SQLite inbox: {sqlite_how}; JetStream inbox: serve and {args.processors} process processes sharing "
          "the stream's consumer")
    print("   clock: wall clock (time.time) of this host for both ends; send time = when the generator wrote the"
          " request; visible = the SQLite inbox's processed_at (set by the processor after the destination load"
          " committed) or, for PostgreSQL, the first poll of makini.purchase_orders that returned the row")
    series = []
    for store, destination in runs:
        series += visibility(args, store, destination)
    print(f"   {'measured as':<58}{'events':>8}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}{'max s':>8}{'missing':>9}"
          f"  p95 <= {VISIBLE_P95_TARGET_S:g} s")
    for label, latencies, missing in series:
        p95 = percentile(latencies, 95)
        print(f"   {label:<58}{len(latencies):>8}{percentile(latencies, 50):>8.2f}{p95:>8.2f}"
              f"{percentile(latencies, 99):>8.2f}{max(latencies, default=float('nan')):>8.2f}{missing:>9}"
              f"  {verdict(p95 <= VISIBLE_P95_TARGET_S and not missing)}")


def listed(choices: Sequence[str]):
    def parse(value: str) -> list[str]:
        items = [item.strip() for item in value.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"{value!r}: give some of {','.join(choices)}")
        return items

    return parse


def counts(value: str) -> list[int]:
    try:
        numbers = sorted({int(item) for item in value.split(",")})
    except ValueError:
        numbers = []
    if not numbers or numbers[0] < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give receiver counts, e.g. 1,2")
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--inbox", type=listed(INBOXES), default=list(INBOXES), help="sqlite,jetstream (default both)")
    parser.add_argument("--receivers", type=counts, default=[1, 2],
                        help="JetStream receivers measured in part 1 (default 1,2)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per variant and round (part 1)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of all variants (part 1)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each (part 1)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-rate", type=int, default=16000,
                        help="requests pre-built per second of part 1 (the generator stops if it runs out)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s for part 2")
    parser.add_argument("--visibility-seconds", type=float, default=5.0, help="seconds of sending in part 2")
    parser.add_argument("--destinations", type=listed(("duckdb", "postgres")), default=["duckdb", "postgres"],
                        help="part 2 with the SQLite inbox (JetStream: postgres)")
    parser.add_argument("--poll-interval", type=float, default=0.1, help="PostgreSQL table poll interval, seconds")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--processor", choices=["in-process", "separate"], default="in-process",
                        help="part 2, SQLite: serve --with-processor (default), or serve + process as two processes")
    parser.add_argument("--processors", type=int, default=2, help="part 2, JetStream: process processes (default 2)")
    parser.add_argument("--skip-acks", action="store_true")
    parser.add_argument("--skip-visibility", action="store_true")
    args = parser.parse_args()
    usable = len(os.sched_getaffinity(0))
    print(f"machine: {os.cpu_count()} CPU cores ({usable} usable); the load generator is a separate process"
          f" sharing these cores with the receivers")
    if not args.skip_acks:
        acks(args)
    if not args.skip_visibility:
        visibilities(args)


if __name__ == "__main__":
    main()
