"""A DuckDB sync never imports SQLAlchemy: dlt's ``Pipeline.load`` renders the
credentials as a SQLAlchemy URL for its load info, and that import costs every
run, incremental ones included, about a fifth of a second
(``sources/makini/dlt_seam.load_packages`` loads without it)."""

import os
import subprocess
import sys


def test_a_sandbox_sync_into_duckdb_imports_no_sqlalchemy(tmp_path):
    env = {**os.environ, "DLT_DATA_DIR": str(tmp_path / "dlt")}
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipelines.sync", "--sandbox",
                          "--sandbox-size", "300", "--no-progress"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")]
    assert "dlt" in imported and "duckdb" in imported  # the listing is there
    assert "vendors" in run.stdout  # it did sync and load
    assert [name for name in imported if name.split(".")[0] == "sqlalchemy"] == []
