"""Full and incremental sync: makini-sync versus dlt's generic rest_api source.

    python benchmarks/sync_benchmark.py --purchase-orders 100000
    python benchmarks/sync_benchmark.py --purchase-orders 500000 --skip-generic

Both run against one sandbox (a separate process), each sync in a process of
its own so peak RSS is measured per sync. rest_api is tuned as its docs advise
(parquet, intermediate compression off). Prints records/s, their ratio, peak
RSS, and the incremental run after 1% of records changed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from makini_sandbox import Sandbox  # noqa: E402
from sources.makini.settings import ENTITIES  # noqa: E402


def measure(mode: str, sandbox: Sandbox, workdir: Path) -> dict:
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / f"dlt_{mode}"), "RUNTIME__LOG_LEVEL": "WARNING"}
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sync_one.py"), "--mode", mode,
         "--base-url", sandbox.base_url, "--token", sandbox.tokens[0], "--db", str(workdir / f"bench_{mode}.duckdb")],
        env=env, capture_output=True, text=True, cwd=workdir,
    )
    if run.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{run.stderr[-3000:]}")
    return orjson.loads(run.stdout.strip().splitlines()[-1])


def show(label: str, figures: dict) -> None:
    print(f"{label:<28} {figures['records']:>9} records {figures['seconds']:>8.2f} s "
          f"{figures['records_per_s']:>9} rec/s  peak RSS {figures['peak_rss_mb']:>5} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--purchase-orders", type=int, default=100_000)
    parser.add_argument("--skip-generic", action="store_true", help="run makini-sync only")
    parser.add_argument("--checkpoint-cost", action="store_true",
                        help="also run makini-sync without page checkpoints and print the ratio")
    args = parser.parse_args()
    modes = ["makini"] if args.skip_generic else ["makini", "rest_api"]
    if args.checkpoint_cost:
        modes.append("makini_nockpt")
    sizes = {"purchase-orders": args.purchase_orders, "work-orders": 20_000, "assets": 10_000,
             "inventory-items": 20_000, "vendors": 2_000}
    with tempfile.TemporaryDirectory() as tmp, Sandbox(seed=1, sizes=sizes, connections=1,
                                                       rate_limit_per_minute=10**9) as sandbox:
        workdir = Path(tmp)
        print(f"sandbox: {sizes}")
        full = {mode: measure(mode, sandbox, workdir) for mode in modes}
        for mode in modes:
            show(f"full {mode}", full[mode])
        if "makini_nockpt" in full:
            print(f"checkpoint cost: full sync takes {full['makini']['seconds'] / full['makini_nockpt']['seconds']:.2f}x "
                  "the time with page checkpoints on versus off")
        if "rest_api" in full:
            print(f"full speed ratio makini/rest_api: {full['makini']['records_per_s'] / full['rest_api']['records_per_s']:.1f}x")
        connection = sandbox.connections[0]["id"]
        changed = 0
        for entity in ENTITIES.values():
            changed += len(sandbox.control.mutate(connection, entity.slug, update=0.01, seed=9)["updated"])
        print(f"changed 1%: {changed} records")
        incremental = {mode: measure(mode, sandbox, workdir) for mode in modes}
        for mode in modes:
            show(f"incremental {mode}", incremental[mode])


if __name__ == "__main__":
    main()
