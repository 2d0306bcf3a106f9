"""A first sync into an empty warehouse prints no warnings: a column the contract
defines for every record (deleted_at, null while a record lives) is no schema
change when its first value arrives, and dlt finds nothing to warn about."""

import os
import subprocess
import sys

from tests.fleet_support import REPO


def test_the_sandbox_first_sync_warns_of_nothing(tmp_path):
    env = {**os.environ, "DLT_DATA_DIR": str(tmp_path / "dlt")}
    run = subprocess.run([sys.executable, "-m", "pipelines.sync", "--sandbox", "--sandbox-size", "300",
                          "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    warnings = [line for line in run.stderr.splitlines()
                if "WARNING" in line and "sandbox running at" not in line]
    assert warnings == [], warnings
    assert "schema changes" not in run.stdout
    assert "vendors" in run.stdout  # it did sync
