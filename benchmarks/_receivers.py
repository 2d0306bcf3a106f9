"""What benchmarks/receiver_benchmark.py measures with: receiver and processor processes, the load
generator (benchmarks/_http_load.py) with the CPU each party used, and a JetStream stream and a
PostgreSQL database of each run's own.

Streams are named ``bench_<pid>_<n>`` on ``MAKINI_TEST_NATS`` (default
nats://127.0.0.1:4222, as for the tests), databases ``receiver_bench_<pid>_<n>``
on the server of DESTINATION__POSTGRES__CREDENTIALS; both are deleted when
their run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlsplit

import orjson

REPO = Path(__file__).resolve().parent.parent
LOAD = REPO / "benchmarks" / "_http_load.py"
NOOP_RECEIVER = REPO / "benchmarks" / "_noop_receiver.py"
POSTGRES_URL = os.environ.get("DESTINATION__POSTGRES__CREDENTIALS",
                              "postgresql://postgres:postgres@127.0.0.1:5432/test")
RUN_NUMBER = itertools.count(1)  # names this run's streams and databases
# every JetStream receiver logs this at ERROR when the broker keeps nats-server's default max_payload: the
# largest events would get 503 there, the benchmark's small ones do not, so it is not an error stop() reports
MAX_PAYLOAD_NOTICE = "the NATS server's max_payload"

sys.path.insert(0, str(REPO))
from makini_sync.webhooks.inbox_url import JetStreamAddress  # noqa: E402
from makini_sync.webhooks.jetstream_inbox import JetStreamInbox  # noqa: E402
from tests.jetstream_support import NATS_URL, with_js  # noqa: E402


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
    """User + system CPU seconds of a process (all its threads) and its live children (the inbox writer), from
    /proc; 0 for a process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            children.update(int(c) for c in (task / "children").read_text().split())
    return own + sum(cpu_ticks(child) for child in children)


def broker_pids() -> list[int]:
    """The nats-server processes on this machine (their CPU is the broker's column)."""
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "nats-server":
                found.append(int(proc.name))
    return found


@dataclass(frozen=True)
class Site:
    """What the receiver and processor processes of one run share: a work dir (logs, dlt's data), the
    webhook secret, the ``--inbox`` value and extra environment."""

    workdir: Path
    secret: str
    inbox: str
    env: dict[str, str] = field(default_factory=dict)

    def with_env(self, **env: str) -> "Site":
        return dataclasses.replace(self, env={**self.env, **env})


def webhooks_cli(site: Site, log_name: str, *args: str, noop: bool = False) -> subprocess.Popen:
    """``python -m pipelines.webhooks --inbox SITE ARGS``, output to ``workdir/log_name``.

    ``noop``: the same CLI through benchmarks/_noop_receiver.py, whose app also serves the no-op route."""
    cli = [str(NOOP_RECEIVER)] if noop else ["-m", "pipelines.webhooks"]
    with open(site.workdir / log_name, "ab") as log:
        return subprocess.Popen(
            [sys.executable, *cli, "--inbox", site.inbox, "--log-level", "WARNING", *args],
            cwd=site.workdir, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "SOURCES__MAKINI__WEBHOOK_SECRET": site.secret,
                 "DLT_DATA_DIR": str(site.workdir / "dlt"), "RUNTIME__LOG_LEVEL": "WARNING",
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                 **site.env},
        )


def stop(proc: subprocess.Popen, log: Path) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    errors = "".join(line for line in log.read_text().splitlines(keepends=True) if MAX_PAYLOAD_NOTICE not in line)
    if "Traceback" in errors or " ERROR " in errors:
        print(f"  ! {log.name} has errors (last lines):\n{errors[-1500:]}")


@contextlib.contextmanager
def running(site: Site, log_name: str, *args: str, noop: bool = False) -> Iterator[subprocess.Popen]:
    proc = webhooks_cli(site, log_name, *args, noop=noop)
    try:
        yield proc
    finally:
        stop(proc, site.workdir / log_name)


@contextlib.contextmanager
def serve(site: Site, *args: str, noop: bool = False) -> Iterator[tuple[int, subprocess.Popen]]:
    """A receiver on a free port, once ``/healthz`` says it can store (a JetStream one: connected, streams made)."""
    port = free_port()
    log_name = f"serve-{port}.log"
    with running(site, log_name, "serve", "--port", str(port), *args, noop=noop) as proc:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"receiver did not start:\n{(site.workdir / log_name).read_text()[-3000:]}")
            time.sleep(0.1)
        if noop:  # without the route the baseline would be measured on 404s
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{port}/webhooks/noop", data=b"{}", method="POST"), timeout=5).close()
            except urllib.error.HTTPError as exc:
                raise SystemExit(f"POST /webhooks/noop answered {exc.code}: the no-op route is missing") from None
        yield port, proc


@contextlib.contextmanager
def bench_stream() -> Iterator[JetStreamInbox]:
    """A JetStream inbox of this run's own, ``bench_<pid>_<n>``; the receivers and processors create it,
    and it, its dead letters and its ledger (with the consumer) are deleted afterwards."""
    from nats.js.errors import NotFoundError

    try:
        with_js(lambda js: js.account_info())
    except Exception as exc:  # noqa: BLE001 - said in one line, with what to check
        raise SystemExit(f"NATS JetStream at {NATS_URL} is not reachable ({type(exc).__name__}: {exc}); "
                         "start nats-server -js, set MAKINI_TEST_NATS, or leave jetstream out of --inbox") from None
    inbox = JetStreamInbox(JetStreamAddress(NATS_URL, f"bench_{os.getpid()}_{next(RUN_NUMBER)}"))
    try:
        yield inbox
    finally:
        async def delete(js) -> None:
            for name in (inbox.stream, inbox.dead_stream, f"KV_{inbox.ledger_bucket}"):
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(name)

        with_js(delete)


def stream_url(inbox: JetStreamInbox) -> str:
    return f"{inbox.server}/{inbox.stream}"


def stream_messages(inbox: JetStreamInbox, purge: bool = False) -> int:
    """The messages in the inbox stream; ``purge``: then remove them."""
    async def read(js) -> int:
        count = (await js.stream_info(inbox.stream)).state.messages
        if purge:
            await js.purge_stream(inbox.stream)
        return count

    return with_js(read)


@contextlib.contextmanager
def private_database(url: str) -> Iterator[str]:
    """A PostgreSQL database of this run's own on ``url``'s server (its URL), dropped afterwards."""
    import psycopg

    name = f"receiver_bench_{os.getpid()}_{next(RUN_NUMBER)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield urlsplit(url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: user nice system irq softirq steal)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]) / os.sysconf("SC_CLK_TCK")


def load(spec: dict, servers: Sequence[int], processors: Sequence[int] = ()) -> dict:
    """Run the generator; add the CPU the servers, processors, broker, generator and everything else used."""
    gen = subprocess.Popen([sys.executable, str(LOAD), orjson.dumps(spec).decode()],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if gen.stdout is None or gen.stdout.readline() != b"ready\n":
        gen.kill()
        raise SystemExit(f"load generator failed:\n{gen.communicate()[1].decode()[-3000:]}")
    groups = {"server": list(servers), "processor": list(processors), "broker": broker_pids()}
    before, busy_from = {k: sum(map(cpu_ticks, pids)) for k, pids in groups.items()}, busy_seconds()
    out, err = gen.communicate(b"go\n", timeout=600)
    used = {k: sum(map(cpu_ticks, pids)) - before[k] for k, pids in groups.items()}
    busy = busy_seconds() - busy_from
    if gen.returncode != 0:
        raise SystemExit(f"load generator failed:\n{err.decode()[-3000:]}")
    result = orjson.loads(out)
    wall = result["run_wall_s"]
    result["cpu_share"] = {  # of one core, over the run (warm-up and final answers included)
        **{k: v / wall for k, v in used.items()}, "generator": result["run_cpu_s"] / wall,
        "others": max(busy - sum(used.values()) - result["run_cpu_s"], 0.0) / wall,
    }
    return result


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def warn_if_busy(shares: list[dict], when: str) -> None:
    others = max(share["others"] for share in shares)
    if others > 0.15:
        print(f"   ! other processes used up to {others:.0%} of a core {when}: the figures are pessimistic;"
              " rerun on a quiet machine")
