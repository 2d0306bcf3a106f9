"""python -m pipelines.reconcile: make the warehouse equal what Makini holds.

Finds missing, stale and ghost rows per connection and table by comparing
(id, updated_at) sets, loads the missing and stale ones and deletes the
ghosts (``makini_sync/scheduling/reconcile.py``). ``--dry-run`` only reports.

Exit codes: 0 every walk finished; 1 a connection or a walk failed (nothing
was deleted for it); 2 the configuration or the command line is wrong.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from makini_sync.destinations.profiles import load_profile
from makini_sync.scheduling.reconcile import reconcile, render_run
from pipelines.exit_codes import failure_exit_code
from pipelines.sync import add_sandbox_arguments, add_worker_arguments, makini_endpoint, worker_selection


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.reconcile", description=__doc__.split("\n")[0])
    parser.add_argument("--destination", default="duckdb", help="a profile in destinations.toml (default: duckdb)")
    parser.add_argument("--entities", default=None, help="comma-separated, e.g. purchase_orders,vendors (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="report what differs; change nothing")
    add_worker_arguments(parser)
    add_sandbox_arguments(parser)
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default) or ERROR")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Reconcile as ``args`` say, print the summary, and return the exit code."""
    try:
        profile = load_profile(args.destination)
        with makini_endpoint(args) as endpoint:
            result = reconcile(profile, endpoint.get("base_url"), endpoint.get("api_token"),
                               args.entities.split(",") if args.entities else None, dry_run=args.dry_run,
                               selection=worker_selection(args))
    except Exception as exc:  # noqa: BLE001 - the known failures become one line and an exit code
        code = failure_exit_code("makini reconcile", exc)
        if code is None:
            raise
        return code
    print(render_run(result))
    if not result.ok:
        print("makini reconcile: some walks did not finish; nothing was deleted for them (see INCOMPLETE)",
              file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
