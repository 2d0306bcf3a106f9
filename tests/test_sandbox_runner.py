"""The sandbox as a subprocess and from the command line."""
from __future__ import annotations

import subprocess
import sys

import httpx
import orjson

from makini_sandbox import Sandbox

TINY = {"purchase-orders": 20, "work-orders": 5, "assets": 5, "inventory-items": 5, "vendors": 5}


def test_subprocess_sandbox_serves_over_loopback():
    with Sandbox(seed=3, sizes=TINY, connections=2) as sb:
        resp = httpx.get(f"{sb.base_url}/api/v1/purchase-orders", params={"limit": 500},
                         headers={"Authorization": f"Bearer {sb.tokens[1]}"})
        assert resp.status_code == 200 and len(resp.json()["data"]) == 20
        assert sb.control.truth(sb.connections[1]["id"], "purchase-orders")["count"] == 20
        proc = sb._proc
    assert proc is None or proc.poll() is not None


def test_cli_prints_one_ready_line_then_serves():
    cmd = [sys.executable, "-m", "pipelines.sandbox", "--port", "0", "--seed", "3", "--connections", "1",
           "--purchase-orders", "10", "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    try:
        ready = orjson.loads(proc.stdout.readline())
        assert ready["base_url"].startswith("http://127.0.0.1:")
        token = ready["connections"][0]["token"]
        resp = httpx.get(ready["base_url"] + "/api/v1/connection", headers={"Authorization": f"Bearer {token}"})
        assert resp.json()["id"] == ready["connections"][0]["id"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
