"""A connection that fails past help (a refused token, a system down past the retry
budget) trips its breaker: its other entities are skipped, in one line with the
reason, and the other connections sync exact."""

from makini_sandbox import Sandbox
from makini_sync.run.summary import render_summary
from sources.makini.client import RetryPolicy
from sources.makini.settings import ENTITIES
from tests.fleet_support import list_pages
from tests.sync_support import assert_exact, sync

SIZES = {"purchase-orders": 300, "work-orders": 100, "assets": 100, "inventory-items": 100, "vendors": 100}
BRIEF = RetryPolicy(budget_seconds=0.5, base_backoff=0.01, max_backoff=0.05, max_retry_after=0.1)


def run_with_one_connection(status, tmp_path, isolated_dlt):
    with Sandbox(seed=52, sizes=SIZES, connections=2, in_process=True) as sandbox:
        broken, healthy = (c["id"] for c in sandbox.connections)
        sandbox.control.set_connection_status(broken, status)
        sandbox.control.requests_served(reset=True)
        result = sync(tmp_path / "w.duckdb", sandbox, retry_policy=BRIEF)
        served = sandbox.control.requests_served()
        assert_exact(tmp_path / "w.duckdb", sandbox, connection_ids=[healthy])
        return result, served, broken, healthy


def test_a_refused_token_trips_the_breaker_at_once(tmp_path, isolated_dlt):
    result, served, broken, healthy = run_with_one_connection("reauthorization_required", tmp_path, isolated_dlt)
    assert not result.ok and result.report.failed_connections == [broken]
    (failure,) = result.report.failures
    assert type(failure).__name__ == "ReauthorizationRequired" and failure.entity == "purchase_orders"
    assert list(result.report.skipped) == [broken]
    assert result.report.skipped[broken].skipped == [e.table for e in ENTITIES.values()][1:]
    assert list_pages(served, [broken]) == 1  # one request refused, no entity after it asked
    summary = render_summary(result)
    assert summary.count("SKIPPED") == 1 and f"SKIPPED connection {broken}" in summary
    assert "after ReauthorizationRequired on purchase_orders" in summary


def test_a_system_down_past_the_retry_budget_stops_being_walked(tmp_path, isolated_dlt):
    result, served, broken, healthy = run_with_one_connection("offline", tmp_path, isolated_dlt)
    assert result.report.failed_connections == [broken]
    (failure,) = result.report.failures
    assert type(failure).__name__ == "RetriesExhausted" and failure.entity == "purchase_orders"
    assert len(result.report.skipped[broken].skipped) == len(ENTITIES) - 1
    walked = {what for what, _ in served["by_connection"][broken].items() if what in {e.slug for e in ENTITIES.values()}}
    assert walked == {"purchase-orders"}, served["by_connection"][broken]
