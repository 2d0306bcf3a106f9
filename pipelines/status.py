"""python -m pipelines.status: the fleet's sync status, read from the destination.

Exit codes: 0 every connection synced at its last run (and, with
--stale-after, none older than that); 1 a connection failed or is stale;
2 the configuration or the command line is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Optional

from makini_sync.destinations.profiles import load_profile
from makini_sync.observe.render_status import by_connection, render
from makini_sync.observe.status import (
    as_json, inbox_counts, local_packages, parse_duration, read_sync_runs, table_statuses,
)
from makini_sync.webhooks.inbox_url import inbox_location
from pipelines.exit_codes import failure_exit_code


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.status", description=__doc__.split("\n")[0])
    parser.add_argument("--destination", default="duckdb", help="a profile in destinations.toml (default: duckdb)")
    parser.add_argument("--json", action="store_true", help="every connection and table, as JSON")
    parser.add_argument("--stale-after", default=None, metavar="DURATION",
                        help="exit 1 when a connection's data is older than this, e.g. 30m, 2h, 1d")
    parser.add_argument("--inbox", default=None, help="the webhook inbox to report on: a SQLite file or nats://HOST:PORT[/STREAM] (default: as the receiver's)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        stale_after = parse_duration(args.stale_after) if args.stale_after else None
        profile = load_profile(args.destination)
        location = inbox_location(args.inbox)
        statuses = table_statuses(read_sync_runs(profile))
    except Exception as exc:  # noqa: BLE001 - the known failures become one line and an exit code
        code = failure_exit_code("makini status", exc)
        if code is None:
            raise
        return code
    now = datetime.now(timezone.utc)
    packages, inbox = local_packages(profile.name), inbox_counts(location)
    connections = by_connection(statuses)
    if args.json:
        print(json.dumps(as_json(statuses, now, packages, inbox), indent=1))
    else:
        print(render(profile.name, connections, now, stale_after, packages, inbox))
    bad = any(c.failing or c.stale(now, stale_after) for c in connections)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
