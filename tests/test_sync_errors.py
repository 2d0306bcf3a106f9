"""Fatal errors fail fast with a message naming connection, entity, request id and what to do."""

import os
import subprocess
import sys
from pathlib import Path



REPO = Path(__file__).resolve().parent.parent


def run_cli(tmp_path, base_url, token, *args, log_level="WARNING"):
    env = {
        **os.environ,
        "SOURCES__MAKINI__BASE_URL": base_url,
        "SOURCES__MAKINI__API_TOKEN": token,
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "cli.duckdb"),
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
        "RUNTIME__REQUEST_TIMEOUT": "5",
    }
    return subprocess.run(
        [sys.executable, "-m", "pipelines.sync", "--entities", "vendors", "--log-level", log_level, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def test_bad_token_is_unauthorized(fresh_sandbox, tmp_path):
    run = run_cli(tmp_path, fresh_sandbox.base_url, "mk_live_not_a_real_token")
    assert run.returncode == 1
    assert "401 UNAUTHORIZED" in run.stdout
    assert "request id req_" in run.stdout
    assert "connection #1" in run.stdout and "api_token" in run.stdout
    assert "mk_live_not_a_real_token" not in run.stdout + run.stderr


def test_reauthorization_required_says_to_reconnect(fresh_sandbox, tmp_path):
    connection = fresh_sandbox.connections[0]
    fresh_sandbox.control.set_connection_status(connection["id"], "reauthorization_required")
    run = run_cli(tmp_path, fresh_sandbox.base_url, connection["token"])
    assert run.returncode == 1
    assert "REAUTHORIZATION_REQUIRED" in run.stdout and "reconnect the system in Makini" in run.stdout
    assert connection["token"] not in run.stdout + run.stderr


def test_not_found_names_the_entity_and_base_url(fresh_sandbox, tmp_path):
    connection = fresh_sandbox.connections[0]
    run = run_cli(tmp_path, fresh_sandbox.base_url + "/wrong-prefix", connection["token"])
    assert run.returncode == 1
    assert "404 NOT_FOUND" in run.stdout and "base_url" in run.stdout


def test_offline_connection_gives_up_after_the_retry_budget(fresh_sandbox, tmp_path, monkeypatch):
    from tests.sync_support import sync
    from sources.makini.client import RetryPolicy
    from sources.makini.connections import Connection

    # the system went down after the run looked it up (a lookup that says offline skips it unasked)
    monkeypatch.setattr(Connection, "_trip_if_down", lambda self, status: None)
    connection = fresh_sandbox.connections[0]
    fresh_sandbox.control.set_connection_status(connection["id"], "offline")
    policy = RetryPolicy(budget_seconds=1.0, base_backoff=0.05, max_backoff=0.2)
    result = sync(tmp_path / "w.duckdb", fresh_sandbox, tokens=[connection["token"]], retry_policy=policy, entities=["vendors"])
    assert not result.ok
    message = str(result.report.failures[0])
    assert "SYSTEM_UNAVAILABLE" in message and "request id req_" in message and "rerun later" in message


def test_missing_configuration_exits_2_naming_the_setting(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    env["DLT_DATA_DIR"] = str(tmp_path / "dlt")
    run = subprocess.run([sys.executable, "-m", "pipelines.sync"], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "api_token" in run.stderr or "base_url" in run.stderr


def test_unknown_destination_exits_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "pipelines.sync", "--destination", "oracle"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "unknown destination 'oracle'" in run.stderr


def test_debug_log_holds_no_token(fresh_sandbox, tmp_path):
    connection = fresh_sandbox.connections[0]
    fresh_sandbox.control.set_faults(seed=4, rate_429=0.2, rate_503=0.2, retry_after=0)
    run = run_cli(tmp_path, fresh_sandbox.base_url, connection["token"], log_level="DEBUG")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-2000:]
    assert "DEBUG" in output and "retrying after" in output  # the log really was verbose
    assert connection["token"] not in output
    assert connection["token"][8:] not in output  # nor its secret part


def test_a_duckdb_file_held_by_another_process_is_one_clear_line(fresh_sandbox, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
                               "sys.stdin.read()", str(tmp_path / "cli.duckdb")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        run = run_cli(tmp_path, fresh_sandbox.base_url, fresh_sandbox.connections[0]["token"])
    finally:
        holder.communicate("", timeout=30)
    assert run.returncode == 1
    assert "cannot open the DuckDB file" in run.stderr and "another process" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_unreachable_destination_names_the_profile_and_the_host_and_no_secret(fresh_sandbox, tmp_path):
    import pytest

    for profile, url in (("postgres", "postgresql://loader:pw-s3cret@127.0.0.1:1/analytics"),
                         ("mysql", "mysql+pymysql://loader:pw-s3cret@127.0.0.1:1/analytics")):
        env_key = f"DESTINATION__{profile.upper()}__CREDENTIALS"
        os.environ[env_key] = url
        try:
            run = run_cli(tmp_path, fresh_sandbox.base_url, fresh_sandbox.tokens[0], "--destination", profile)
        finally:
            del os.environ[env_key]
        assert run.returncode == 1, run.stderr
        (line,) = [line for line in run.stderr.splitlines() if "cannot reach" in line] or [pytest.fail(run.stderr)]
        assert f"destination {profile!r}" in line and "127.0.0.1:1/analytics" in line, line
        assert "pw-s3cret" not in run.stderr + run.stdout and "Traceback" not in run.stderr
