"""kill -9 the sync at random points (extraction, normalisation, load); every rerun ends
exact and refetches at most one page per entity (counted by the sandbox)."""

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil
import pytest

from makini_sandbox import Sandbox
from sources.makini.settings import ENTITIES
from tests.sync_support import assert_exact

REPO = Path(__file__).resolve().parent.parent
SIZES = {"purchase-orders": 1200, "work-orders": 500, "assets": 600, "inventory-items": 600, "vendors": 250}
KILL_POINTS = int(os.environ.get("MAKINI_KILL_POINTS", "5"))  # every one hits a running sync; 40 for the harness


# The sync with the lifted read's planning off (sources/makini/lifted_read.py): the drifting
# connection's pages are then refused and prepared in a page worker, the path a page takes
# when the lifted read cannot plan for it.
WITHOUT_LIFTED_READS = ("from sources.makini import lifted_read; lifted_read.learn = lambda *a, **k: None; "
                        "import runpy; runpy.run_module('pipelines.sync', run_name='__main__')")


def sync_process(sandbox, workdir: Path, lifted_reads: bool = True) -> subprocess.Popen:
    env = {
        **os.environ,
        "SOURCES__MAKINI__BASE_URL": sandbox.base_url,
        "SOURCES__MAKINI__API_TOKEN": orjson.dumps(sandbox.tokens).decode(),
        "DESTINATION__DUCKDB__CREDENTIALS": str(workdir / "w.duckdb"),
        "DLT_DATA_DIR": str(workdir / "dlt"),
        "PYTHONPATH": str(REPO),
    }
    command = ["-m", "pipelines.sync"] if lifted_reads else ["-c", WITHOUT_LIFTED_READS]
    return subprocess.Popen(
        [sys.executable, *command, "--rows-per-load", "3000", "--no-progress"],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def list_requests(sandbox) -> dict:
    served = sandbox.control.requests_served(reset=True)["by_connection"]
    return {(c, e.slug): served.get(c, {}).get(e.slug, 0) for c in served for e in ENTITIES.values()}


def served_total(sandbox) -> int:
    return sum(sum(counts.values()) for counts in sandbox.control.requests_served()["by_connection"].values())


@pytest.mark.timeout(120 + 12 * KILL_POINTS)
def test_killed_sync_reruns_exact_and_refetches_at_most_one_page_per_entity(tmp_path):
    rng = random.Random(20261128)
    # one connection's pages go through Arrow's reader, the other's drift: they are read by the
    # lifted read, or, on every other kill point, refused and prepared in a page worker
    with Sandbox(seed=21, sizes=SIZES, connections=2, in_process=True, shapes=["default", "drift_int64"]) as sandbox:
        sandbox.control.set_faults(seed=1, slow_rate=1.0, slow_seconds=0.02)  # spread the walk out in time
        clean_dir = tmp_path / "clean"
        clean_dir.mkdir()
        sandbox.control.requests_served(reset=True)
        started = time.monotonic()
        clean = sync_process(sandbox, clean_dir)
        first_request = None  # the interpreter's start-up comes before it: a kill there tests nothing
        while clean.poll() is None and time.monotonic() - started < 300:
            if first_request is None and served_total(sandbox):
                first_request = time.monotonic() - started
            time.sleep(0.02)
        assert clean.wait(timeout=1) == 0, clean.stderr.read().decode()[-2000:]
        duration = time.monotonic() - started
        assert first_request is not None, "the clean run made no request"
        pages = list_requests(sandbox)
        refetched_per_rerun, over_bound, hits, kill_times, kills_beside_workers = [], [], 0, [], 0
        for point in range(KILL_POINTS):
            workdir = tmp_path / f"kill{point}"
            workdir.mkdir()
            lifted_reads = point % 2 == 1
            run = sync_process(sandbox, workdir, lifted_reads)
            # from the first request to 90% of the clean run: through extraction, normalisation
            # and loads, with room for a rerun that is faster than the clean one
            kill_at = rng.uniform(first_request, 0.9 * duration)
            time.sleep(kill_at)
            workers = psutil.Process(run.pid).children(recursive=True) if run.poll() is None else []
            running = run.poll() is None  # checked right before the signal
            if running:
                run.send_signal(signal.SIGKILL)
            run.wait()
            kills_beside_workers += running and bool(workers)
            _, alive = psutil.wait_procs(workers, timeout=15)
            assert not alive, f"worker processes outlived the killed sync: {alive}"
            killed_mid_sync = running and run.returncode == -signal.SIGKILL and served_total(sandbox) > 0
            hits += killed_mid_sync
            kill_times.append((round(kill_at, 2), killed_mid_sync))
            before = list_requests(sandbox)
            rerun = sync_process(sandbox, workdir, lifted_reads)
            assert rerun.wait(timeout=300) == 0, rerun.stderr.read().decode()[-3000:]
            after = list_requests(sandbox)
            refetched = {k: before.get(k, 0) + after.get(k, 0) - n for k, n in pages.items()}
            over = {k: v for k, v in refetched.items() if v > 1}
            if over:
                over_bound.append((point, over))
            refetched_per_rerun.append(sum(refetched.values()))
            assert_exact(workdir / "w.duckdb", sandbox)  # always: a killed sync never loses or corrupts data
        print(f"\nkill points: {KILL_POINTS}, {hits} killed a running sync (kill time, hit): {kill_times}; "
              f"pages refetched per rerun (all walks): max {max(refetched_per_rerun)}, "
              f"mean {sum(refetched_per_rerun) / len(refetched_per_rerun):.2f}; clean run {duration:.1f}s "
              f"(first request at {first_request:.1f}s); reruns over the one-page bound: {len(over_bound)}; "
              f"kills with page workers running: {kills_beside_workers}")
        # on the kill points without lifted reads the drifting connection's pages go through a
        # page worker: kills must have found one at work
        assert kills_beside_workers, f"no kill found a page worker running: {kill_times}"
        # a kill that lands after the run ended (or before it asked for anything) proves nothing
        assert hits >= math.ceil(2 * KILL_POINTS / 3), \
            f"only {hits} of {KILL_POINTS} kills hit a running sync: {kill_times} (clean run {duration:.1f}s)"
        # (point, {(connection, entity): pages refetched}) for every rerun over the bound
        assert not over_bound, f"{len(over_bound)} of {KILL_POINTS} reruns refetched more than one page of a walk: {over_bound[:3]}"
