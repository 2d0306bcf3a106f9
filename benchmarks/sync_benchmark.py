"""Full and incremental sync: makini-sync versus the floor and dlt's generic rest_api source.

    python benchmarks/sync_benchmark.py --purchase-orders 100000
    python benchmarks/sync_benchmark.py --purchase-orders 100000 --shapes default,nulls,custom_nulls,drift_int64 --full-rounds 3
    python benchmarks/sync_benchmark.py --purchase-orders 500000 --skip-generic --skip-floor

All run against one sandbox (a separate process), each in a process of its
own so peak RSS is measured per run; a run's time is its whole process's,
start-up and exit included (the process's own clock is printed beside it). The full-sync contenders, alternating
round by round, each into a fresh database: the floor (``floor.py``: fetch
every page to files, one DuckDB ``read_json`` pass per entity), raw
fetch+parse (``floor.py --mode fetch_parse``: no insert), makini-sync, and
rest_api tuned as its docs advise (parquet, intermediate compression off).
Prints each run, the medians, makini-sync's wall time over the floor's and
over rest_api's, peak RSS, pages per conversion path and any DuckDB
out-of-memory retries; then the incremental run after 1% of records changed.
``--shapes`` runs the whole comparison once per deployment shape
(``makini_sandbox/shapes.py``: ``nulls`` puts nulls and nested values in
custom fields, ``custom_nulls`` 3-6 custom fields with a null among them,
``drift`` changes types part way through the walk).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from makini_sandbox import Sandbox  # noqa: E402
from sources.makini.settings import ENTITIES  # noqa: E402


FLOOR_MODES = ("floor", "fetch_parse")  # benchmarks/floor.py; no incremental run


def measure(mode: str, sandbox: Sandbox, workdir: Path, run_name: str = "") -> dict:
    """One run in a process of its own; ``run_name`` picks a fresh pipeline and database."""
    name = f"{mode}{run_name}"
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / f"dlt_{name}"), "RUNTIME__LOG_LEVEL": "WARNING"}
    common = ["--base-url", sandbox.base_url, "--token", sandbox.tokens[0], "--db", str(workdir / f"bench_{name}.duckdb")]
    if mode in FLOOR_MODES:
        limits = ",".join(f"{e.slug}={e.max_page_size}" for e in ENTITIES.values())  # the sync's page sizes
        command = [str(REPO / "benchmarks" / "floor.py"), "--mode", mode, *common, "--limits", limits]
    else:
        command = [str(REPO / "benchmarks" / "sync_one.py"), "--mode", mode, *common]
    started = time.perf_counter()
    run = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, cwd=workdir)
    process_seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{run.stderr[-3000:]}")
    figures = orjson.loads(run.stdout.strip().splitlines()[-1])
    # the whole process is timed, start-up and exit included, as a cron job pays them;
    # the process's own clock (from its first import to its last row) is kept beside it
    figures["inner_seconds"], figures["seconds"] = figures["seconds"], round(process_seconds, 2)
    figures["records_per_s"] = round(figures["records"] / process_seconds)
    figures["oom_retries"] = run.stderr.lower().count("out of memory")
    if mode in FLOOR_MODES:  # nothing reads the floor's tables again: its disk is given back at once
        (workdir / f"bench_{name}.duckdb").unlink(missing_ok=True)
    return figures


def show(label: str, figures: dict) -> None:
    paths = figures.get("paths") or {}
    pages = sum(paths.values())
    shares = ", ".join(f"{name} {n / pages:.0%}" for name, n in sorted(paths.items())) if pages else ""
    split = ""
    if "fetch_seconds" in figures:
        split = f"  fetch {figures['fetch_seconds']:.2f} s, load {figures['load_seconds']:.2f} s, {figures['pages']} pages"
        if figures.get("sampled_all"):
            split += f", read twice to sample every file: {', '.join(figures['sampled_all'])}"
    print(f"{label:<28} {figures['records']:>9} records {figures['seconds']:>8.2f} s "
          f"(in-process {figures['inner_seconds']:.2f} s) "
          f"{figures['records_per_s']:>9} rec/s  peak RSS {figures['peak_rss_mb']:>5} MB"
          f"  out-of-memory retries {figures['oom_retries']}" + (f"  pages: {shares}" if shares else "") + split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--purchase-orders", type=int, default=100_000)
    parser.add_argument("--skip-generic", action="store_true", help="leave out dlt's rest_api")
    parser.add_argument("--skip-floor", action="store_true", help="leave out the floor and raw fetch+parse")
    parser.add_argument("--checkpoint-cost", action="store_true",
                        help="also run makini-sync without page checkpoints and print the ratio")
    parser.add_argument("--checkpoint-pairs", type=int, default=3,
                        help="with --checkpoint-cost: full syncs with and without checkpoints (medians compared)")
    parser.add_argument("--full-rounds", type=int, default=1,
                        help="full runs per contender, alternating, each into a fresh database (medians compared)")
    parser.add_argument("--incremental-rounds", type=int, default=3,
                        help="incremental runs per sync, each after a fresh 1%% of changes (median compared)")
    parser.add_argument("--shapes", default="default",
                        help="comma-separated deployment shapes, one comparison each (default: default)")
    args = parser.parse_args()
    for shape in args.shapes.split(","):
        print(f"=== shape {shape}")
        compare(args, shape)


def compare(args: argparse.Namespace, shape: str) -> None:
    contenders = ([] if args.skip_floor else list(FLOOR_MODES)) + ["makini"] + ([] if args.skip_generic else ["rest_api"])
    syncs = [mode for mode in contenders if mode not in FLOOR_MODES]  # the ones with an incremental run
    sizes = {"purchase-orders": args.purchase_orders, "work-orders": 20_000, "assets": 10_000,
             "inventory-items": 20_000, "vendors": 2_000}
    shapes = None if shape == "default" else [shape]  # default: the sandbox exactly as before shapes
    with tempfile.TemporaryDirectory() as tmp, Sandbox(seed=1, sizes=sizes, connections=1, shapes=shapes,
                                                       rate_limit_per_minute=10**9) as sandbox:
        workdir = Path(tmp)
        print(f"sandbox: {sizes}, shape {shape}")
        # this machine's speed drifts by 10-20% from one minute to the next, so
        # one full run each can decide a ratio; rounds alternate the contenders,
        # each into a fresh database, and the medians are compared. The first
        # round's syncs keep their databases for the incremental runs.
        runs: dict[str, list[dict]] = {mode: [] for mode in contenders}
        for round_number in range(args.full_rounds):
            for mode in contenders:
                figures = measure(mode, sandbox, workdir, f"_full{round_number}" if round_number else "")
                runs[mode].append(figures)
                show(f"full {mode}" + (f" (round {round_number + 1})" if round_number else ""), figures)
        full = {mode: summary(values) for mode, values in runs.items()}
        basis = f"medians of {args.full_rounds} runs each" if args.full_rounds > 1 else "one run each"
        for mode in contenders:
            figures = full[mode]
            each = ", ".join(f"{r['seconds']:.2f}" for r in runs[mode])
            print(f"full {mode}: median {figures['seconds']:.2f} s, {figures['records_per_s']:.0f} rec/s "
                  f"(runs: {each} s), "
                  f"peak RSS up to {figures['peak_rss_mb']} MB, out-of-memory retries {figures['oom_retries']}")
        makini = full["makini"]
        if makini.get("paths"):
            pages = sum(makini["paths"].values())
            print(f"[{shape}] makini-sync pages by path: " + ", ".join(
                f"{name} {n} ({n / pages:.0%})" for name, n in sorted(makini["paths"].items())))
        if "floor" in full:
            floor = full["floor"]
            print(f"[{shape}] makini-sync/floor time: {makini['seconds'] / floor['seconds']:.2f}x ({basis}; "
                  f"floor fetch {floor['fetch_seconds']:.2f} s + load {floor['load_seconds']:.2f} s; "
                  f"raw fetch+parse {full['fetch_parse']['seconds']:.2f} s)")
        if "rest_api" in full:
            print(f"[{shape}] makini-sync/rest_api time: {makini['seconds'] / full['rest_api']['seconds']:.2f}x; "
                  f"full speed ratio makini/rest_api: "
                  f"{makini['records_per_s'] / full['rest_api']['records_per_s']:.2f}x ({basis})")
        if args.checkpoint_cost:
            # one pair of full syncs differs by more than the cost measured, so
            # more pairs run, alternating, each into a fresh database
            seconds: dict[str, list[float]] = {"makini": [], "makini_nockpt": []}
            for pair in range(args.checkpoint_pairs):
                for mode in seconds:
                    seconds[mode].append(measure(mode, sandbox, workdir, f"_pair{pair}")["seconds"])
            on, off = statistics.median(seconds["makini"]), statistics.median(seconds["makini_nockpt"])
            print(f"checkpoint cost: full sync takes {on / off:.2f}x the time with page checkpoints on versus off "
                  f"(median of {len(seconds['makini'])} runs each: {on:.2f} s vs {off:.2f} s; "
                  f"on {', '.join(f'{v:.2f}' for v in seconds['makini'])}; "
                  f"off {', '.join(f'{v:.2f}' for v in seconds['makini_nockpt'])})")
        connection = sandbox.connections[0]["id"]
        # an incremental run lasts about 2 s, most of it process start and fixed
        # per-run costs, so one run each is noise: rounds alternate the two on
        # the same fresh 1% of changes, and the median is compared
        timings: dict[str, list[float]] = {mode: [] for mode in syncs}
        for round_number in range(args.incremental_rounds):
            changed = 0
            for entity in ENTITIES.values():
                changed += len(sandbox.control.mutate(connection, entity.slug, update=0.01,
                                                      seed=9 + round_number)["updated"])
            print(f"round {round_number + 1}: changed 1%: {changed} records")
            for mode in syncs:
                figures = measure(mode, sandbox, workdir)
                timings[mode].append(figures["seconds"])
                show(f"  incremental {mode}", figures)
        if not args.incremental_rounds:
            return
        medians = {mode: statistics.median(values) for mode, values in timings.items()}
        for mode in syncs:
            print(f"incremental {mode}: median {medians[mode]:.2f} s over {len(timings[mode])} runs "
                  f"({', '.join(f'{v:.2f}' for v in timings[mode])})")
        if "rest_api" in medians:
            print(f"incremental makini/rest_api time: {medians['makini'] / medians['rest_api']:.2f}x "
                  "(below 1.00: makini-sync is faster)")


def summary(runs: list[dict]) -> dict:
    """One contender's full runs: median time and speed, the highest peak RSS, all
    out-of-memory retries, and the first run's pages by path and other figures."""
    return {**runs[0],
            "seconds": statistics.median(r["seconds"] for r in runs),
            "records_per_s": statistics.median(r["records_per_s"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "oom_retries": sum(r["oom_retries"] for r in runs),
            **{key: statistics.median(r[key] for r in runs) for key in ("fetch_seconds", "load_seconds")
               if key in runs[0]}}


if __name__ == "__main__":
    main()
