"""Run the Makini sandbox from the command line.

    python -m pipelines.sandbox --port 8765 --seed 7 --connections 2 --purchase-orders 1000

Prints one JSON line (base_url, connections with their tokens) when ready,
then serves until Ctrl-C. `--port 0` picks a free port.
"""
from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys

import orjson

from makini_sandbox.entities import ENTITY_SPECS
from makini_sandbox.server import SandboxHTTPServer
from makini_sandbox.state import SandboxState


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipelines.sandbox", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port, 0 for any free port (default 8765)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--connections", type=int, default=2)
    p.add_argument("--rate-limit", type=int, default=10_000, help="requests per connection per minute")
    p.add_argument("--log-level", default="INFO")
    for entity, spec in ENTITY_SPECS.items():
        p.add_argument(f"--{entity}", type=int, default=spec.default_size, metavar="N",
                       help=f"{entity} per connection (default {spec.default_size})")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sizes = {e: getattr(args, e.replace("-", "_")) for e in ENTITY_SPECS}
    state = SandboxState(args.seed, sizes, args.connections, args.rate_limit)
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
