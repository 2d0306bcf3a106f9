"""One measured full sync or reconcile, in its own process so its peak RSS is its own.

    python benchmarks/reconcile_one.py --mode sync|reconcile --destination duckdb|postgres --base-url URL --token T

The destination's credentials come from the environment (as the benchmark sets
them). Prints one JSON line: mode, records, seconds, records_per_s, peak_rss_mb,
and reconcile's findings.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["sync", "reconcile"], required=True)
    parser.add_argument("--destination", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()

    from makini_sync.destinations.profiles import load_profile
    from makini_sync.scheduling.reconcile import reconcile
    from makini_sync.run.sync import run_sync

    profile = load_profile(args.destination)
    started = time.perf_counter()
    found: dict = {}
    if args.mode == "sync":
        result = run_sync(profile, base_url=args.base_url, api_token=[args.token])
        if not result.ok:
            raise SystemExit(f"sync failed: {result.report.failures}")
        records = sum(result.report.records.values())
    else:
        run = reconcile(profile, args.base_url, [args.token])
        if not run.ok:
            raise SystemExit(f"reconcile did not finish: {run.results}")
        records = sum(r.fetched_records for r in run.results)
        found = {k: sum(getattr(r, k) for r in run.results) for k in ("missing", "stale", "ghosts", "loaded", "deleted")}
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(orjson.dumps({"mode": args.mode, "records": records, "seconds": round(seconds, 2),
                        "records_per_s": round(records / seconds) if seconds else 0,
                        "peak_rss_mb": round(peak_mb), **found}).decode())


if __name__ == "__main__":
    main()
