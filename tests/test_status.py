"""python -m pipelines.status: what the sync recorded in the destination, problems first,
and exit codes a monitor can alert on (--stale-after)."""

import json
import os
import subprocess
import sys

from makini_sandbox import Sandbox
from tests.fleet_support import REPO
from tests.sync_support import FAST_RETRIES, sync

SIZES = {"purchase-orders": 120, "work-orders": 40, "assets": 40, "inventory-items": 40, "vendors": 40}


def status(tmp_path, *args):
    env = {**os.environ, "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "w.duckdb"),
           "DLT_DATA_DIR": str(tmp_path / "dlt"), "MAKINI_INBOX": str(tmp_path / "none.sqlite")}
    return subprocess.run([sys.executable, "-m", "pipelines.status", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_status_lists_the_failing_connection_first_and_exits_1(tmp_path, isolated_dlt):
    with Sandbox(seed=71, sizes=SIZES, connections=3, in_process=True) as sandbox:
        ids = [c["id"] for c in sandbox.connections]
        assert sync(tmp_path / "w.duckdb", sandbox).ok
        sandbox.control.set_connection_status(ids[2], "reauthorization_required")
        assert not sync(tmp_path / "w.duckdb", sandbox, retry_policy=FAST_RETRIES).ok
    run = status(tmp_path)
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert "3 connection(s), 1 failing" in lines[0]
    assert lines[2].split()[0] == ids[2] and "FAILED purchase_orders" in lines[2], lines
    assert {line.split()[0] for line in lines[3:5]} == set(ids[:2])
    assert all("5/5" in line for line in lines[3:5])

    tables = json.loads(status(tmp_path, "--json").stdout)["tables"]
    assert len(tables) == 15
    failing = {(t["connection_id"], t["table"]) for t in tables if t["failing"]}
    assert failing == {(ids[2], t) for t in ("purchase_orders", "work_orders", "assets", "inventory_items",
                                              "vendors")}
    broken = [t for t in tables if t["connection_id"] == ids[2]]
    assert all(t["last_ok_at"] and t["records"] > 0 for t in broken)  # its last success is still shown


def test_stale_after_exits_1_only_when_a_connection_is_older(tmp_path, isolated_dlt):
    with Sandbox(seed=72, sizes=SIZES, connections=2, in_process=True) as sandbox:
        assert sync(tmp_path / "w.duckdb", sandbox).ok
    ages = [t["age_seconds"] for t in json.loads(status(tmp_path, "--json").stdout)["tables"]]
    assert len(ages) == 10 and all(a is not None and a > 0 for a in ages), ages
    oldest = max(ages)
    fresh = status(tmp_path, "--stale-after", f"{int(oldest) + 3600}s")
    assert fresh.returncode == 0 and "0 failing, 0 stale" in fresh.stdout, fresh.stdout
    stale = status(tmp_path, "--stale-after", f"{oldest / 2:.3f}s")
    assert stale.returncode == 1 and "2 stale" in stale.stdout and "STALE" in stale.stdout, stale.stdout
    bad = status(tmp_path, "--stale-after", "soon")
    assert bad.returncode == 2 and "--stale-after 'soon'" in bad.stderr


def test_status_of_an_empty_destination_is_empty_not_an_error(tmp_path, isolated_dlt):
    run = status(tmp_path)
    assert run.returncode == 0, run.stderr
    assert "0 connection(s)" in run.stdout


def test_status_reports_a_jetstream_inbox_and_an_unreachable_broker(tmp_path, isolated_dlt):
    from tests.jetstream_support import own_stream, with_js

    with own_stream() as (url, inbox):
        async def two_events(js):
            await inbox.ensure(js)
            for n in range(2):
                event = {"type": "record.updated", "connection_id": "conn_a", "data": {"id": str(n)}}
                await inbox.publish(js, f"msg_{n}", inbox.subject(event), json.dumps(event).encode())

        with_js(two_events)
        run = status(tmp_path, "--inbox", url)
        assert run.returncode == 0, run.stderr
        assert "webhook inbox: 2 pending (0 failing), 0 dead letter(s)" in run.stdout, run.stdout
    down = status(tmp_path, "--inbox", "nats://127.0.0.1:9/nowhere")
    assert down.returncode == 0 and "webhook inbox: unknown (nats://127.0.0.1:9/nowhere" in down.stdout
    bad = status(tmp_path, "--inbox", "xyz://somewhere")
    assert bad.returncode == 2 and "nats://HOST:PORT[/STREAM]" in bad.stderr
