"""One measured sync, run in its own process so its peak RSS is its own.

    python benchmarks/sync_one.py --mode makini|rest_api --base-url URL --token T --db PATH

Prints one JSON line: mode, records, seconds, records_per_s, peak_rss_mb (the
process's own plus its page workers', worker_peak_rss_mb apart, plus any child still
running at the end: multiprocessing's resource tracker, which the workers' pool starts).
Env ``BENCH_ROWS_PER_LOAD`` sets makini-sync's rows per load package, for
variants (``sync_variants.py 'r100k:BENCH_ROWS_PER_LOAD=100000'``), ``BENCH_CONVERSION_PROCESSES``
its page workers (``sources/makini/page_workers.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _peak_rss import children_peak_rss_mb, peak_rss_mb  # noqa: E402

ENTITY_PATHS = ["purchase-orders", "work-orders", "assets", "inventory-items", "vendors"]


PATHS: dict = {}  # pages by conversion path, makini-sync only
WORKERS: dict = {"peak_rss_mb": 0.0}  # makini-sync's page workers (sources/makini/page_workers.py)


def run_makini(args) -> int:
    from makini_sync.destinations.profiles import load_profile
    from makini_sync.run.sync import run_sync

    base = load_profile("duckdb")
    profile = base.with_settings(credentials=args.db)
    rows = {"rows_per_load": int(os.environ["BENCH_ROWS_PER_LOAD"])} if "BENCH_ROWS_PER_LOAD" in os.environ else {}
    if "BENCH_CONVERSION_PROCESSES" in os.environ:
        rows["conversion_processes"] = int(os.environ["BENCH_CONVERSION_PROCESSES"])
    result = run_sync(profile, base_url=args.base_url, api_token=[args.token], pipeline_name="bench_makini",
                      checkpoints=not args.no_checkpoints, **rows)
    if not result.ok:
        raise SystemExit(f"sync failed: {result.report.failures}")
    PATHS.update(result.report.paths)
    WORKERS["peak_rss_mb"] = result.worker_peak_rss_mb
    return sum(result.report.records.values())


def run_rest_api(args) -> int:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    os.environ["NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION"] = "true"
    source = rest_api_source({
        "client": {
            "base_url": args.base_url,
            "auth": {"type": "bearer", "token": args.token},
            "paginator": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
        },
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "merge",
            "endpoint": {"params": {"limit": 500}, "data_selector": "data"},
        },
        "resources": [
            {
                "name": path.replace("-", "_"),
                "endpoint": {
                    "path": f"api/v1/{path}",
                    "incremental": {"cursor_path": "updated_at", "start_param": "modified_after",
                                    "initial_value": "1970-01-01T00:00:00.000Z"},
                },
            }
            for path in ENTITY_PATHS
        ],
    })
    pipeline = dlt.pipeline("bench_rest_api", destination=dlt.destinations.duckdb(args.db), dataset_name="makini")
    pipeline.run(source, loader_file_format="parquet")
    counts = pipeline.last_trace.last_normalize_info.row_counts
    return sum(v for k, v in counts.items() if "__" not in k and not k.startswith("_dlt"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["makini", "makini_nockpt", "rest_api"], required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--no-checkpoints", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    args.no_checkpoints = args.no_checkpoints or args.mode == "makini_nockpt"
    records = run_rest_api(args) if args.mode == "rest_api" else run_makini(args)
    seconds = time.perf_counter() - started
    # the workers' memory counts as the sync's, and so does any helper process still running
    peak_mb = peak_rss_mb() + WORKERS["peak_rss_mb"] + children_peak_rss_mb()
    print(orjson.dumps({"mode": args.mode, "records": records, "seconds": round(seconds, 2),
                        "records_per_s": round(records / seconds) if seconds else 0,
                        "peak_rss_mb": round(peak_mb), "worker_peak_rss_mb": round(WORKERS["peak_rss_mb"]),
                        "paths": PATHS}).decode())


if __name__ == "__main__":
    main()
    if os.environ.get("BENCH_EXIT") != "interpreter":  # as the sync's command ends (pipelines/process_exit.py)
        from pipelines.process_exit import exit_now

        exit_now(0)
