"""A connection that fails past help (a refused token, a system down past the retry
budget) trips its breaker: its other entities are skipped, in one line with the
reason, and the other connections sync exact."""

import pytest

from makini_sandbox import Sandbox
from makini_sync.run.summary import render_summary
from sources.makini.client import RetryPolicy
from sources.makini.connections import Connection
from sources.makini.settings import ENTITIES
from tests.fleet_support import list_pages
from tests.sync_support import assert_exact, sync

SIZES = {"purchase-orders": 300, "work-orders": 100, "assets": 100, "inventory-items": 100, "vendors": 100}
BRIEF = RetryPolicy(budget_seconds=0.5, base_backoff=0.01, max_backoff=0.05, max_retry_after=0.1)


def run_with_one_connection(status, tmp_path, monkeypatch=None):
    """Sync two connections, one of them ``status``. With ``monkeypatch``, the status
    lookup does not see it (the system failed after the run identified it)."""
    if monkeypatch is not None:
        monkeypatch.setattr(Connection, "_trip_if_down", lambda self, status: None)
    with Sandbox(seed=52, sizes=SIZES, connections=2, in_process=True) as sandbox:
        broken, healthy = (c["id"] for c in sandbox.connections)
        sandbox.control.set_connection_status(broken, status)
        sandbox.control.requests_served(reset=True)
        result = sync(tmp_path / "w.duckdb", sandbox, retry_policy=BRIEF)
        served = sandbox.control.requests_served()
        assert_exact(tmp_path / "w.duckdb", sandbox, connection_ids=[healthy])
        return result, served, broken, healthy


@pytest.mark.parametrize("status, cause", [("reauthorization_required", "ReauthorizationRequired"),
                                           ("offline", "SystemOffline")])
def test_a_status_lookup_that_says_down_skips_the_connection_unasked(status, cause, tmp_path, isolated_dlt):
    result, served, broken, healthy = run_with_one_connection(status, tmp_path)
    assert not result.ok and result.report.failed_connections == [broken]
    assert result.report.failures == []
    breaker = result.report.skipped[broken]
    assert type(breaker.cause).__name__ == cause
    assert breaker.skipped == [e.table for e in ENTITIES.values()]
    assert list_pages(served, [broken]) == 0  # not one list request: it could only fail
    lines = [line for line in render_summary(result).splitlines() if "FAILED" in line]
    assert len(lines) == 1 and f"FAILED connection {broken}: " in lines[0] and status in lines[0]


def test_a_token_refused_mid_run_trips_the_breaker_at_once(tmp_path, isolated_dlt, monkeypatch):
    result, served, broken, healthy = run_with_one_connection("reauthorization_required", tmp_path, monkeypatch)
    assert not result.ok and result.report.failed_connections == [broken]
    (failure,) = result.report.failures  # the first refusal; the walks beside it stop with it
    assert type(failure).__name__ == "ReauthorizationRequired"
    assert sorted([failure.entity, *result.report.skipped[broken].skipped]) == sorted(
        e.table for e in ENTITIES.values())
    assert list_pages(served, [broken]) <= len(ENTITIES)  # at most one refused request per entity, no retry
    lines = [line for line in render_summary(result).splitlines() if "FAILED" in line]
    assert len(lines) == 1 and f"FAILED connection {broken}: " in lines[0] and failure.entity in lines[0]


def test_a_system_down_past_the_retry_budget_stops_being_walked(tmp_path, isolated_dlt, monkeypatch):
    result, served, broken, healthy = run_with_one_connection("offline", tmp_path, monkeypatch)
    assert result.report.failed_connections == [broken]
    (failure,) = result.report.failures
    assert type(failure).__name__ == "RetriesExhausted"
    assert len(result.report.skipped[broken].skipped) == len(ENTITIES) - 1
