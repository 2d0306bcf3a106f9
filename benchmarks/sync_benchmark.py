"""Full and incremental sync: makini-sync versus dlt's generic rest_api source.

    python benchmarks/sync_benchmark.py --purchase-orders 100000
    python benchmarks/sync_benchmark.py --purchase-orders 100000 --shapes default,nulls,drift --full-rounds 3
    python benchmarks/sync_benchmark.py --purchase-orders 500000 --skip-generic

Both run against one sandbox (a separate process), each sync in a process of
its own so peak RSS is measured per sync. rest_api is tuned as its docs advise
(parquet, intermediate compression off). Prints records/s, their ratio, peak
RSS, and the incremental run after 1% of records changed. ``--shapes`` runs
the whole comparison once per deployment shape (``makini_sandbox/shapes.py``:
``nulls`` puts nulls and nested values in custom fields, ``drift`` changes
types part way through the walk), and prints each makini-sync sync's share of
pages per conversion path and any DuckDB out-of-memory retries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from makini_sandbox import Sandbox  # noqa: E402
from sources.makini.settings import ENTITIES  # noqa: E402


def measure(mode: str, sandbox: Sandbox, workdir: Path, run_name: str = "") -> dict:
    """One sync in a process of its own; ``run_name`` picks a fresh pipeline and database."""
    name = f"{mode}{run_name}"
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / f"dlt_{name}"), "RUNTIME__LOG_LEVEL": "WARNING"}
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sync_one.py"), "--mode", mode,
         "--base-url", sandbox.base_url, "--token", sandbox.tokens[0], "--db", str(workdir / f"bench_{name}.duckdb")],
        env=env, capture_output=True, text=True, cwd=workdir,
    )
    if run.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{run.stderr[-3000:]}")
    figures = orjson.loads(run.stdout.strip().splitlines()[-1])
    figures["oom_retries"] = run.stderr.lower().count("out of memory")
    return figures


def show(label: str, figures: dict) -> None:
    paths = figures.get("paths") or {}
    pages = sum(paths.values())
    shares = ", ".join(f"{name} {n / pages:.0%}" for name, n in sorted(paths.items())) if pages else ""
    print(f"{label:<28} {figures['records']:>9} records {figures['seconds']:>8.2f} s "
          f"{figures['records_per_s']:>9} rec/s  peak RSS {figures['peak_rss_mb']:>5} MB"
          f"  out-of-memory retries {figures['oom_retries']}" + (f"  pages: {shares}" if shares else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--purchase-orders", type=int, default=100_000)
    parser.add_argument("--skip-generic", action="store_true", help="run makini-sync only")
    parser.add_argument("--checkpoint-cost", action="store_true",
                        help="also run makini-sync without page checkpoints and print the ratio")
    parser.add_argument("--checkpoint-pairs", type=int, default=3,
                        help="with --checkpoint-cost: full syncs with and without checkpoints (medians compared)")
    parser.add_argument("--full-rounds", type=int, default=1,
                        help="full syncs per contender, alternating, each into a fresh database (median compared)")
    parser.add_argument("--incremental-rounds", type=int, default=3,
                        help="incremental runs per sync, each after a fresh 1%% of changes (median compared)")
    parser.add_argument("--shapes", default="default",
                        help="comma-separated deployment shapes, one comparison each (default: default)")
    args = parser.parse_args()
    for shape in args.shapes.split(","):
        print(f"=== shape {shape}")
        compare(args, shape)


def compare(args: argparse.Namespace, shape: str) -> None:
    modes = ["makini"] if args.skip_generic else ["makini", "rest_api"]
    if args.checkpoint_cost:
        modes.append("makini_nockpt")
    sizes = {"purchase-orders": args.purchase_orders, "work-orders": 20_000, "assets": 10_000,
             "inventory-items": 20_000, "vendors": 2_000}
    shapes = None if shape == "default" else [shape]  # default: the sandbox exactly as before shapes
    with tempfile.TemporaryDirectory() as tmp, Sandbox(seed=1, sizes=sizes, connections=1, shapes=shapes,
                                                       rate_limit_per_minute=10**9) as sandbox:
        workdir = Path(tmp)
        print(f"sandbox: {sizes}, shape {shape}")
        full = {mode: measure(mode, sandbox, workdir) for mode in modes}
        for mode in modes:
            show(f"full {mode}", full[mode])
        if args.full_rounds > 1:
            # this machine's speed drifts by 10-20% from one minute to the next,
            # so one full sync each can decide the ratio; rounds alternate the
            # contenders and the medians are compared
            rates = {mode: [full[mode]["records_per_s"]] for mode in modes if mode != "makini_nockpt"}
            for round_number in range(1, args.full_rounds):
                for mode in rates:
                    figures = measure(mode, sandbox, workdir, f"_full{round_number}")
                    rates[mode].append(figures["records_per_s"])
                    show(f"full {mode} (round {round_number + 1})", figures)
            for mode in rates:
                full[mode] = {**full[mode], "records_per_s": statistics.median(rates[mode])}
                print(f"full {mode}: median {full[mode]['records_per_s']:.0f} rec/s over {len(rates[mode])} runs "
                      f"({', '.join(str(v) for v in rates[mode])})")
        if "makini_nockpt" in full:
            # one pair of full syncs differs by more than the cost measured, so
            # more pairs run, alternating, each into a fresh database
            seconds = {"makini": [full["makini"]["seconds"]], "makini_nockpt": [full["makini_nockpt"]["seconds"]]}
            for pair in range(1, args.checkpoint_pairs):
                for mode in seconds:
                    seconds[mode].append(measure(mode, sandbox, workdir, f"_pair{pair}")["seconds"])
            on, off = statistics.median(seconds["makini"]), statistics.median(seconds["makini_nockpt"])
            print(f"checkpoint cost: full sync takes {on / off:.2f}x the time with page checkpoints on versus off "
                  f"(median of {len(seconds['makini'])} runs each: {on:.2f} s vs {off:.2f} s; "
                  f"on {', '.join(f'{v:.2f}' for v in seconds['makini'])}; "
                  f"off {', '.join(f'{v:.2f}' for v in seconds['makini_nockpt'])})")
        if "rest_api" in full:
            basis = f"medians of {args.full_rounds} runs each" if args.full_rounds > 1 else "one run each"
            print(f"[{shape}] full speed ratio makini/rest_api: "
                  f"{full['makini']['records_per_s'] / full['rest_api']['records_per_s']:.2f}x ({basis})")
        connection = sandbox.connections[0]["id"]
        # an incremental run lasts about 2 s, most of it process start and fixed
        # per-run costs, so one run each is noise: rounds alternate the two on
        # the same fresh 1% of changes, and the median is compared
        timings: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_number in range(args.incremental_rounds):
            changed = 0
            for entity in ENTITIES.values():
                changed += len(sandbox.control.mutate(connection, entity.slug, update=0.01,
                                                      seed=9 + round_number)["updated"])
            print(f"round {round_number + 1}: changed 1%: {changed} records")
            for mode in modes:
                figures = measure(mode, sandbox, workdir)
                timings[mode].append(figures["seconds"])
                show(f"  incremental {mode}", figures)
        if not args.incremental_rounds:
            return
        medians = {mode: statistics.median(values) for mode, values in timings.items()}
        for mode in modes:
            print(f"incremental {mode}: median {medians[mode]:.2f} s over {len(timings[mode])} runs "
                  f"({', '.join(f'{v:.2f}' for v in timings[mode])})")
        if "rest_api" in medians:
            print(f"incremental makini/rest_api time: {medians['makini'] / medians['rest_api']:.2f}x "
                  "(below 1.00: makini-sync is faster)")

if __name__ == "__main__":
    main()
