"""A fleet against a sandbox with latency and per-connection rate limits: walks run side
by side, each connection keeps inside its own budget, and every row lands exact."""

import time

import duckdb
import pytest

from makini_sandbox import Sandbox
from sources.makini.client import RetryPolicy
from sources.makini.connections import Connection
from tests.sync_support import assert_exact, sync

SMALL = {"purchase-orders": 30, "work-orders": 10, "assets": 10, "inventory-items": 10, "vendors": 10}


def test_many_connections_at_latency_sync_exact_with_walks_side_by_side(tmp_path, isolated_dlt):
    latency = 0.3  # enough that waiting one request at a time would dwarf the conversions
    with Sandbox(seed=61, sizes=SMALL, connections=24, in_process=True, latency_ms=latency * 1000) as sandbox:
        sandbox.control.requests_served(reset=True)
        started = time.monotonic()
        result = sync(tmp_path / "w.duckdb", sandbox, concurrency=16)
        wall = time.monotonic() - started
        served = sandbox.control.requests_served()["total"]
        assert result.ok, result.report.failures
        assert_exact(tmp_path / "w.duckdb", sandbox)
    one_at_a_time = served * latency  # what the walks cost waiting on the API one after another
    assert served >= 24 * 7  # an id, a status and five lists per connection at least
    assert wall < one_at_a_time / 4, f"{wall:.1f} s for {served} requests: the walks did not overlap"


@pytest.mark.parametrize("reset_header", [True, False])
def test_each_connection_paces_itself_inside_its_own_window(reset_header, tmp_path, isolated_dlt):
    sizes = {"purchase-orders": 900, "work-orders": 300, "assets": 200, "inventory-items": 200, "vendors": 200}
    with Sandbox(seed=62, sizes=sizes, connections=3, in_process=True) as sandbox:
        sandbox.control.set_rate_limit(3, 2, reset_header=reset_header)
        sandbox.control.requests_served(reset=True)
        result = sync(tmp_path / "w.duckdb", sandbox, concurrency=16)
        admission = sandbox.control.requests_served()["admission"]
        assert result.ok, result.report.failures
        assert_exact(tmp_path / "w.duckdb", sandbox)
    # each connection needed three windows or more: the limit was met, not avoided
    assert min(a.get("admitted", 0) for a in admission.values()) > 2 * 3, admission
    refused = [a.get("refused", 0) for a in admission.values()]
    if reset_header:  # the server says when its window ends: never a 429
        assert refused == [0, 0, 0], admission
    else:
        # one 429 per window until two resets gave the window's length, then none; Retry-After
        # is whole seconds, so two estimates of consecutive resets can fall closer than the pacer
        # takes for two resets (one reset told twice) and a third window's 429 comes first
        assert max(refused) <= 3, admission


def test_one_slow_connection_does_not_hold_the_others(tmp_path, isolated_dlt):
    with Sandbox(seed=63, sizes=SMALL, connections=6, in_process=True) as sandbox:
        slow = sandbox.connections[0]["id"]
        sandbox.control.set_latency(1500, connection_id=slow)
        sandbox.control.requests_served(reset=True)
        started = time.monotonic()
        result = sync(tmp_path / "w.duckdb", sandbox, concurrency=16)
        wall = time.monotonic() - started
        assert result.ok, result.report.failures
        assert_exact(tmp_path / "w.duckdb", sandbox)
    # the slow connection's own chain (its id, its status read, one list page) is the floor;
    # its entities walked one after another, or the others waiting behind it, would add far more
    assert wall < 1.5 * 3 + 4.5, f"{wall:.1f} s: the slow connection's walks did not overlap the others'"


def test_a_connection_failing_in_retries_does_not_hold_back_the_others_rows(tmp_path, isolated_dlt, monkeypatch):
    # /api/v1/connection still says active while every list request gets 503 (a skip unasked is not this)
    monkeypatch.setattr(Connection, "_trip_if_down", lambda self, status: None)
    budget = 8.0
    with Sandbox(seed=64, sizes=SMALL, connections=3, in_process=True) as sandbox:
        down, *up = (c["id"] for c in sandbox.connections)
        sandbox.control.set_connection_status(down, "offline")
        started = time.time()
        result = sync(tmp_path / "w.duckdb", sandbox, seconds_per_load=1.0,
                      retry_policy=RetryPolicy(budget_seconds=budget, base_backoff=0.2, max_backoff=0.5))
        ended = time.time()
        assert result.report.failed_connections == [down]
        assert_exact(tmp_path / "w.duckdb", sandbox, connection_ids=up)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        first_load = con.execute("SELECT MIN(inserted_at) FROM makini._dlt_loads").fetchone()[0]
    assert ended - started >= budget  # the failing connection had its whole retry budget
    assert first_load.timestamp() - started < budget / 2, "the others' rows waited for the failing connection"
