"""`python -m makini_sandbox` (or `python -m pipelines.sandbox`): the sandbox server.

    python -m makini_sandbox --port 8765 --seed 7 --connections 2 --purchase-orders 1000
    python -m makini_sandbox --port 0 --connections 3 --shapes '["default", "type_drift", "v3"]'
    python -m makini_sandbox --connections 1000 --purchase-orders 40 --work-orders 20 --assets 15 \
        --inventory-items 15 --vendors 10 --latency-ms 150 --rate-limit 600 --rate-window 60

A fleet: `--connections 1000` with small sizes starts in a few seconds.
`--rate-limit N --rate-window SECONDS`: each connection may make N requests per
fixed window (default 10000 per 60 s); `--latency-ms MS` delays every API
response (default 0). Both can be changed at run time, also per connection,
with `POST /_sandbox/rate-limit` and `POST /_sandbox/latency` (control.py).
`--shapes` is a JSON list, one spec per connection, or one spec for all (see
makini_sandbox/shapes.py); `--maintenance-plans N` sizes the custom entity.
Prints one JSON line (base_url, connections with their tokens) when ready,
then serves until Ctrl-C or SIGTERM. `--port 0` picks a free port.
"""
from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys

import orjson

from .entities import ALL_ENTITY_SPECS, ENTITY_SPECS
from .server import SandboxHTTPServer
from .state import SandboxState


def _shapes(text: str):
    text = text.strip()
    return orjson.loads(text) if text.startswith("[") else text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m makini_sandbox", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port, 0 for any free port (default 8765)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--connections", type=int, default=2)
    p.add_argument("--rate-limit", type=int, default=10_000, metavar="N",
                   help="requests per connection per window (default 10000)")
    p.add_argument("--rate-window", type=float, default=60.0, metavar="SECONDS",
                   help="length of the fixed rate-limit window (default 60)")
    p.add_argument("--latency-ms", type=float, default=0.0, metavar="MS",
                   help="delay of every API response, not of control calls (default 0)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--shapes", type=_shapes, default=None, help="a JSON list of shape specs, or one spec for all")
    for entity, spec in ALL_ENTITY_SPECS.items():
        p.add_argument(f"--{entity}", type=int, default=spec.default_size if entity in ENTITY_SPECS else None,
                       metavar="N")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sizes = {e: getattr(args, e.replace("-", "_")) for e in ALL_ENTITY_SPECS}
    sizes = {e: n for e, n in sizes.items() if n is not None}
    try:
        state = SandboxState(args.seed, sizes, args.connections, args.rate_limit, shapes=args.shapes,
                             rate_window_seconds=args.rate_window, latency_ms=args.latency_ms)
    except ValueError as exc:
        p.error(str(exc))
    gc.freeze()  # the records live as long as the process: keep them out of every later GC pass
    server = SandboxHTTPServer(state, args.host, args.port)
    # SIGTERM (what Sandbox.stop sends) ends the process as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.stdout.write(orjson.dumps({"base_url": server.base_url,
                                   "connections": [c.public() for c in state.connections]}).decode() + "\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
