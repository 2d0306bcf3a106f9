"""A minimal HTTP/1.1 load generator for the receiver benchmark, run in its own process.

    python benchmarks/_http_load.py '<spec as JSON>'
    -> "ready" once the requests are built; on a line on stdin, runs, then one JSON object on stdout

httpx costs more CPU per request than the server it measures, so this is an
asyncio ``Protocol`` over raw sockets: requests are built (and signed, with a
unique ``webhook-id`` and a fresh timestamp each) before the clock starts;
a response is read as status line + headers + ``Content-Length`` body. Only
what the receiver sends is understood (no chunked bodies, no pipelining).

The spec's ``ports`` lists the receivers; the connections are spread over
them in turn (two receivers behind a load balancer that balances
connections). Two modes, chosen by the spec:
  closed  ``connections`` keep-alive connections, each sending its next
          request when the previous answer arrives (wrk's model); latency
          and throughput over ``seconds`` after ``warmup`` seconds.
  paced   an open loop at ``rate`` requests/s for ``seconds``, each request
          on an idle connection; the wall-clock send and answer time of every
          ``webhook-id`` is returned (for webhook-to-row latency).
"""

from __future__ import annotations

import asyncio
import collections
import resource
import sys
import time
from datetime import datetime, timezone
from typing import Callable, Optional

import orjson
from standardwebhooks.webhooks import Webhook


def po_event(webhook_id: str, po_id: str, connection_id: str, lines: int = 2) -> bytes:
    """A ``record.created`` purchase order, shaped like the sandbox's (~0.7 KB)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    record = {
        "id": po_id, "status": "approved", "order_number": f"PO-{po_id}", "updated_at": now, "created_at": now,
        "deleted_at": None, "vendor_id": "V-1", "currency": "EUR", "total": 120.5,
        "custom_fields": {"cost_center": "CC1"},
        "line_items": [{"line_number": n, "material_code": f"M{n}", "quantity": 2, "unit_price": 30.125}
                       for n in range(1, lines + 1)],
    }
    return orjson.dumps({"id": webhook_id, "type": "record.created", "created_at": now,
                         "connection_id": connection_id, "data": {"entity": "purchase-orders", "record": record}})


def build_requests(spec: dict) -> tuple[list[bytes], list[str]]:
    """Signed requests (bytes) and their webhook ids; ``unique: false`` builds one request to reuse."""
    signer = Webhook(spec["secret"])
    host = spec["host"]  # the same request goes to any of the ports
    stamp = datetime.now(timezone.utc)
    prefix = spec["id_prefix"]
    requests, ids = [], []
    for i in range(spec["count"] if spec.get("unique", True) else 1):
        webhook_id = f"{prefix}-{i}"
        body = po_event(webhook_id, f"{prefix}-po-{i}", spec.get("connection_id", "conn_bench"))
        head = (
            f"POST {spec['path']} HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nwebhook-id: {webhook_id}\r\n"
            f"webhook-timestamp: {int(stamp.timestamp())}\r\n"
            f"webhook-signature: {signer.sign(webhook_id, stamp, body.decode())}\r\n\r\n"
        )
        requests.append(head.encode() + body)
        ids.append(webhook_id)
    return requests, ids


class Connection(asyncio.Protocol):
    """One keep-alive connection; calls ``on_answer(self, status)`` per complete response."""

    def __init__(self, on_answer: Callable[["Connection", int], None], on_lost: Callable[[Optional[Exception]], None]):
        self.on_answer, self.on_lost = on_answer, on_lost
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = b""
        self.need: Optional[int] = None
        self.status = 0
        self.sent_at = 0.0
        self.tag: Optional[int] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, tag: Optional[int] = None) -> None:
        self.tag = tag
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.need is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buffer[:end].lower()
                self.status = int(head[9:12])
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    raise RuntimeError(f"response without content-length: {head[:200]!r}")
                line_end = head.find(b"\r\n", at + 2)
                length = int(head[at + 17:line_end if line_end > 0 else len(head)])
                self.need = end + 4 + length
            if len(self.buffer) < self.need:
                return
            self.buffer, self.need = self.buffer[self.need:], None
            self.on_answer(self, self.status)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.on_lost(exc)


async def connect(spec: dict, make: Callable[[], Connection]) -> list[Connection]:
    """``spec["connections"]`` connections, spread over ``spec["ports"]`` in turn."""
    loop, ports = asyncio.get_running_loop(), spec["ports"]
    conns = []
    for i in range(spec["connections"]):
        _, conn = await loop.create_connection(make, spec["host"], ports[i % len(ports)])
        conns.append(conn)
    return conns


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def closed_loop(spec: dict, requests: list[bytes]) -> dict:
    loop = asyncio.get_running_loop()
    warmup, seconds = spec["warmup"], spec["seconds"]
    unique = spec.get("unique", True)
    state = {"next": 0, "exhausted": False, "lost": 0}
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()
    done = loop.create_future()
    open_connections = [0]
    measure_from = measure_to = 0.0  # set when the clock starts, after connecting
    answered_in_window = [0]

    def next_request() -> Optional[bytes]:
        if not unique:
            return requests[0]
        if state["next"] >= len(requests):
            state["exhausted"] = True
            return None
        state["next"] += 1
        return requests[state["next"] - 1]

    def on_answer(conn: Connection, status: int) -> None:
        now = time.perf_counter()
        if conn.sent_at >= measure_from and conn.sent_at < measure_to:
            latencies.append((now - conn.sent_at) * 1000)
            statuses[status] += 1
        if measure_from <= now < measure_to:
            answered_in_window[0] += 1
        request = next_request() if now < measure_to else None
        if request is None:
            conn.transport.close()
        else:
            conn.send(request)

    def on_lost(exc: Optional[Exception]) -> None:
        if exc is not None:
            state["lost"] += 1
        open_connections[0] -= 1
        if open_connections[0] == 0 and not done.done():
            done.set_result(None)

    conns = await connect(spec, lambda: Connection(on_answer, on_lost))
    open_connections[0] = len(conns)
    start = time.perf_counter()
    measure_from, measure_to = start + warmup, start + warmup + seconds
    for conn in conns:
        request = next_request()
        if request is not None:
            conn.send(request)
    await asyncio.sleep(max(measure_to - time.perf_counter(), 0))
    await asyncio.wait_for(done, timeout=60)
    return {
        "answered": answered_in_window[0], "seconds": seconds, "latencies_ms": latencies,
        "statuses": {str(k): v for k, v in statuses.items()}, "sent_total": state["next"] if unique else None,
        "exhausted": state["exhausted"], "connections_lost": state["lost"],
    }


async def paced(spec: dict, requests: list[bytes], ids: list[str]) -> dict:
    loop = asyncio.get_running_loop()
    rate, total = spec["rate"], len(requests)
    idle: asyncio.Queue = asyncio.Queue()
    sent = [0.0] * total
    answered = [0.0] * total
    status = [0] * total
    remaining = [total]
    done = loop.create_future()
    max_dispatch_lag = 0.0

    def on_answer(conn: Connection, code: int) -> None:
        answered[conn.tag] = time.time()
        status[conn.tag] = code
        remaining[0] -= 1
        if remaining[0] == 0 and not done.done():
            done.set_result(None)
        idle.put_nowait(conn)

    def on_lost(exc: Optional[Exception]) -> None:
        pass

    conns = await connect(spec, lambda: Connection(on_answer, on_lost))
    for conn in conns:
        idle.put_nowait(conn)
    start = time.perf_counter()
    i = 0
    while i < total:
        due = min(int((time.perf_counter() - start) * rate) + 1, total)
        while i < due:
            conn = await idle.get()
            max_dispatch_lag = max(max_dispatch_lag, time.perf_counter() - (start + i / rate))
            sent[i] = time.time()
            conn.send(requests[i], tag=i)
            i += 1
        await asyncio.sleep(max(start + i / rate - time.perf_counter(), 0))
    send_seconds = time.perf_counter() - start
    await asyncio.wait_for(done, timeout=120)
    for conn in conns:
        conn.transport.close()
    return {
        "events": [[ids[k], sent[k], answered[k], status[k]] for k in range(total)],
        "send_seconds": send_seconds, "max_dispatch_lag_s": max_dispatch_lag,
    }


def main() -> None:
    spec = orjson.loads(sys.argv[1])
    built = time.perf_counter()
    requests, ids = build_requests(spec)
    build_seconds = time.perf_counter() - built
    sys.stdout.buffer.write(b"ready\n")
    sys.stdout.buffer.flush()
    sys.stdin.readline()  # the parent snapshots CPU counters, then says go
    cpu_from, wall_from = cpu_seconds(), time.perf_counter()
    if spec["mode"] == "closed":
        result = asyncio.run(closed_loop(spec, requests))
    else:
        result = asyncio.run(paced(spec, requests, ids))
    result["build_seconds"] = build_seconds
    result["run_cpu_s"], result["run_wall_s"] = cpu_seconds() - cpu_from, time.perf_counter() - wall_from
    sys.stdout.buffer.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
