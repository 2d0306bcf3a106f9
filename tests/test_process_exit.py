"""A one-shot command ends without its interpreter's teardown, and loses nothing for it:
the exit code, buffered output, exit handlers, threads still at work and idle thread pools all count."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROGRAM = """
import atexit, concurrent.futures, sys, threading, time
from pipelines.process_exit import exit_now

def late_write():
    time.sleep(0.3)
    open(sys.argv[1] + ".thread", "w").write("done")

threading.Thread(target=late_write).start()  # not a daemon: the exit waits for it
pool = concurrent.futures.ThreadPoolExecutor(1)  # its thread waits for work until told to finish
pool.submit(time.sleep, 0.01)
atexit.register(lambda: open(sys.argv[1] + ".atexit", "w").write("ran"))
sys.stdout.write("summary line without a newline")  # buffered: a pipe is not a terminal
exit_now(3)
"""


def test_exit_now_keeps_the_code_the_output_the_handlers_and_the_threads(tmp_path):
    marker = tmp_path / "marker"
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as under cron
    run = subprocess.run([sys.executable, "-c", PROGRAM, str(marker)], capture_output=True, text=True, cwd=REPO,
                         timeout=60, env=buffered)
    assert run.returncode == 3, run.stderr
    assert run.stdout == "summary line without a newline"
    assert (tmp_path / "marker.thread").read_text() == "done"
    assert (tmp_path / "marker.atexit").read_text() == "ran"


def test_the_sync_command_ends_with_its_exit_code_and_summary(tmp_path):
    """``python -m pipelines.sync`` ends through ``exit_now``: a configuration error is still exit code 2,
    with its message (``test_cli`` runs a whole sync through the ``makini-sync`` command)."""
    bad = subprocess.run([sys.executable, "-m", "pipelines.sync", "--no-progress", "--destination", "nowhere"],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "nowhere" in bad.stderr


def test_output_that_cannot_be_written_is_a_failure_not_a_success():
    """A summary lost to a full disk exits 120 and says so, as the interpreter's own exit would."""
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    program = "from pipelines.process_exit import exit_now; print('summary'); exit_now(0)"
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, "-c", program], stdout=full, stderr=subprocess.PIPE, text=True,
                             cwd=REPO, timeout=60, env=buffered)
    assert run.returncode == 120, run.stderr
    assert "could not write the output" in run.stderr
