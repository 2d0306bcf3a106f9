"""python -m pipelines.sync: sync Makini into a destination (cron-friendly).

Exit codes: 0 all connections synced; 1 a connection or the load failed;
2 the configuration or the command line is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Iterator, Optional

# only light modules here: a page worker imports this module again, as a spawned process
# imports its parent's main module; the run and its destinations are imported in main()
from makini_sync.run.defaults import DEFAULT_ROWS_PER_LOAD, DEFAULT_SECONDS_PER_LOAD
from makini_sync.workers.selection import Shard, WorkerSelection
from pipelines.process_exit import exit_now
from sources.makini.fleet import DEFAULT_CONCURRENCY
from sources.makini.page_workers import DEFAULT_CONVERSION_PROCESSES

logger = logging.getLogger("makini_sync")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.sync", description=__doc__.split("\n")[0])
    parser.add_argument("--destination", default="duckdb", help="a profile in destinations.toml (default: duckdb)")
    parser.add_argument("--entities", default=None, help="comma-separated, e.g. purchase_orders,vendors (default: all)")
    parser.add_argument("--full-refresh", action="store_true",
                        help="delete this worker's connections' rows and bookmarks, and reload them")
    add_worker_arguments(parser)
    add_sandbox_arguments(parser)
    parser.add_argument("--rows-per-load", type=int, default=None,
                        help="rows per load package; bounds memory (default: %d)" % DEFAULT_ROWS_PER_LOAD)
    parser.add_argument("--seconds-per-load", type=float, default=DEFAULT_SECONDS_PER_LOAD, metavar="S",
                        help="start a load once this long passed with rows fetched, whatever slow connections "
                             "are doing (default: %g)" % DEFAULT_SECONDS_PER_LOAD)
    parser.add_argument("--no-checkpoints", action="store_true", help="do not spool pages (see the README's crash safety)")
    add_concurrency_argument(parser)
    parser.add_argument("--conversion-processes", type=non_negative_int, default=DEFAULT_CONVERSION_PROCESSES,
                        metavar="N",
                        help="worker processes that parse and convert pages whose types drift (Arrow's reader "
                             "refuses them); each costs about 80 MB; 0: the sync's own process does "
                             "(default: %d)" % DEFAULT_CONVERSION_PROCESSES)
    parser.add_argument("--connections", default=None, metavar="FILE",
                        help="the fleet's connections file (TOML; tokens stay in secrets; see README's "
                             "'A fleet of connections'); default: sources.makini.connections_file, else "
                             "sources.makini.api_token")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default) or ERROR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """--shard and --worker: which of the configured connections this worker syncs."""
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="sync only shard K of N of the configured connections (by a hash of each token); "
                             "N workers with --shard 1/N .. N/N split a fleet with no coordinator")
    parser.add_argument("--worker", default=None, metavar="NAME",
                        help="name this worker's state, for workers configured with different token lists "
                             "(default: the shard, or 'all')")


def add_concurrency_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=positive_int, default=DEFAULT_CONCURRENCY, metavar="N",
                        help="walks (connection x entity) waiting on the API at once; each connection also "
                             "keeps to its own rate limit (default: %d)" % DEFAULT_CONCURRENCY)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0")
    return value


def worker_selection(args: argparse.Namespace) -> WorkerSelection:
    shard, worker = getattr(args, "shard", None), getattr(args, "worker", None)
    return WorkerSelection(Shard.parse(shard) if shard else None, worker)


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    """--sandbox and its settings: run against the bundled Makini sandbox."""
    parser.add_argument("--sandbox", action="store_true", help="start the bundled Makini sandbox and use it (no token needed)")
    parser.add_argument("--sandbox-size", type=int, default=2000, help="purchase orders per sandbox connection (default: 2000)")
    parser.add_argument("--sandbox-shapes", default=None,
                        help="one sandbox connection per deployment shape, e.g. default,drift,v3_chaos "
                             "(makini_sandbox/shapes.py; default: two default connections)")


@contextlib.contextmanager
def makini_endpoint(args: argparse.Namespace) -> Iterator[dict]:
    """Source settings: the sandbox's when --sandbox, else dlt config (empty dict)."""
    if not args.sandbox:
        yield {}
        return
    from makini_sandbox import Sandbox

    sizes = {"purchase-orders": args.sandbox_size}
    shapes = args.sandbox_shapes.split(",") if args.sandbox_shapes else None
    with Sandbox(seed=7, sizes=sizes, connections=len(shapes) if shapes else 2, shapes=shapes) as sandbox:
        logger.warning("sandbox running at %s with %d connections", sandbox.base_url, len(sandbox.tokens))
        yield {"base_url": sandbox.base_url, "api_token": sandbox.tokens}


def main(argv: Optional[list[str]] = None) -> int:
    from makini_sync.destinations.profiles import load_profile
    from makini_sync.run.summary import failure_line, render_summary
    from makini_sync.run.sync import run_sync
    from pipelines.exit_codes import failure_exit_code

    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    progress = None if args.no_progress or not sys.stderr.isatty() else "enlighten"
    try:
        profile = load_profile(args.destination)
        selection = worker_selection(args)
        with makini_endpoint(args) as endpoint:
            result = run_sync(
                profile,
                selection=selection,
                entities=args.entities.split(",") if args.entities else None,
                full_refresh=args.full_refresh,
                progress=progress,
                rows_per_load=args.rows_per_load or DEFAULT_ROWS_PER_LOAD,
                seconds_per_load=args.seconds_per_load,
                checkpoints=not args.no_checkpoints,
                concurrency=args.concurrency,
                connections_file=args.connections,
                conversion_processes=args.conversion_processes,
                **endpoint,
            )
    except Exception as exc:  # noqa: BLE001 - the known failures become one line and an exit code
        code = failure_exit_code("makini sync", exc)
        if code is None:
            raise
        return code
    print(render_summary(result))
    if not result.ok:
        print(failure_line(result), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_now(main())
