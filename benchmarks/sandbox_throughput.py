"""How fast does the sandbox serve purchase orders to a plain client?

Starts a subprocess sandbox (one connection), then walks every purchase order
at limit=500 with a keep-alive httpx client, parsing each page with orjson,
and prints records/s, MB/s and pages. The sandbox must not be the bottleneck
of a pipeline benchmark, so this figure should sit far above what dlt loads.

    python benchmarks/sandbox_throughput.py --purchase-orders 100000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx
import orjson

# Run as a script, sys.path[0] is benchmarks/; make the project importable even
# when the editable install predates the makini_sandbox package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from makini_sandbox import Sandbox  # noqa: E402


def _tail_cursor(content: bytes) -> tuple[str | None, int]:
    """next_cursor and the record count without parsing the page: the body is
    `{"data":[...],"next_cursor":...,"total_count":N}` and cursors hold no comma."""
    tail = content[content.rfind(b'"next_cursor":') + 14:]
    raw = tail.split(b",", 1)[0].rstrip(b"}")
    return (None if raw == b"null" else raw.strip(b'"').decode()), content.count(b'{"id":')


def walk(base_url: str, token: str, limit: int, parse: bool = True) -> tuple[int, int, int]:
    """Page through all purchase orders; return (records, bytes, pages).

    parse=True is what a real client does (orjson-parse every page). With
    parse=False the cursor is sliced from the tail of the body, which measures
    what the sandbox and the HTTP stack deliver without the client's JSON cost.
    """
    records = nbytes = pages = 0
    params: dict = {"limit": limit}
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        while True:
            resp = http.get("/api/v1/purchase-orders", params=params)
            resp.raise_for_status()
            if parse:
                body = orjson.loads(resp.content)
                cursor, n = body["next_cursor"], len(body["data"])
            else:
                cursor, n = _tail_cursor(resp.content)
            records += n
            nbytes += len(resp.content)
            pages += 1
            if cursor is None:
                return records, nbytes, pages
            params = {"limit": limit, "cursor": cursor}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--purchase-orders", type=int, default=100_000)
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--rounds", type=int, default=1, help="walks to time (the best is reported)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    with Sandbox(seed=args.seed, sizes={"purchase-orders": args.purchase_orders}, connections=1,
                 rate_limit_per_minute=10_000_000) as sb:
        startup = time.perf_counter() - t0
        print(f"sandbox startup with {args.purchase_orders:,} purchase orders: {startup:.1f} s")
        for parse, label in ((True, "httpx + orjson parse"), (False, "httpx, no parse (transport only)")):
            best = None
            for i in range(args.rounds):
                t = time.perf_counter()
                records, nbytes, pages = walk(sb.base_url, sb.tokens[0], args.limit, parse)
                elapsed = time.perf_counter() - t
                print(f"  {label}, walk {i + 1}: {records:,} records, {pages} pages, {nbytes / 1e6:.1f} MB "
                      f"in {elapsed:.2f} s")
                if records != args.purchase_orders:
                    print(f"ERROR: expected {args.purchase_orders} records, got {records}", file=sys.stderr)
                    return 1
                best = elapsed if best is None else min(best, elapsed)
            print(f"{label}: {records / best:,.0f} records/s, {nbytes / 1e6 / best:.1f} MB/s, {pages} pages "
                  f"(best of {args.rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
