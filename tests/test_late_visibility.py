"""Late-visible records: a change Makini publishes after the bookmark passed its
updated_at is still caught, because the bookmark respects /sync-status."""

from __future__ import annotations

import logging
from datetime import timedelta

import dlt
import httpx
import pytest

from sources.makini.bookmark import parse_iso
from sources.makini.client import RetryPolicy
from sources.makini.errors import ConfigurationError
from makini_sync.workers.naming import sync_pipeline_name
from tests.sync_support import assert_exact, sync, warehouse_versions

# a failing /sync-status is retried for the request budget or client.BRIEF_BUDGET_SECONDS,
# whichever is shorter, then falls back: a short budget spares these tests the full wait
STATUS_FAILS_SOON = RetryPolicy(budget_seconds=2, base_backoff=0.01, max_backoff=0.05, max_retry_after=0.2)


def _bookmarks(table: str) -> dict:
    pipeline = dlt.attach(sync_pipeline_name("duckdb", "makini"))
    return pipeline.state["sources"]["makini"]["resources"][table]["bookmarks"]


def _late_change(sandbox, connection_id: str) -> tuple[str, str]:
    """Vendor X changes in the source system but stays invisible; vendor Y changes a
    little later and is visible at once, so Y is newer than X yet served first."""
    control = sandbox.control
    x, y = sorted(control.truth(connection_id, "vendors", detail=True)["records"])[:2]
    held = control.mutate(connection_id, "vendors", ids=[x], update=1.0, hold=True)
    assert held["updated"] == [x] and held["held"]
    control.advance_clock(5)
    control.mutate(connection_id, "vendors", ids=[y], update=1.0)
    control.advance_clock(5)  # the next walk starts well after both changes
    return x, y


def _sync_status(sandbox) -> dict:
    headers = {"Authorization": f"Bearer {sandbox.tokens[0]}"}
    return httpx.get(f"{sandbox.base_url}/api/v1/sync-status", headers=headers, timeout=10).json()


def test_the_sandbox_holds_a_change_until_its_makini_sync(fresh_sandbox):
    connection_id = fresh_sandbox.connections[0]["id"]
    control = fresh_sandbox.control
    before = {r["id"]: r["updated_at"] for r in control.records(connection_id, "vendors")}
    x, y = _late_change(fresh_sandbox, connection_id)
    served = {r["id"]: r["updated_at"] for r in control.records(connection_id, "vendors")}
    assert served[x] == before[x] and served[y] > before[y]  # X's change is not visible yet
    bound = _sync_status(fresh_sandbox)["last_successful_sync_at"]
    assert bound < served[y]  # the bound stays below the held change, so below Y as well

    published = control.makini_sync(connection_id)
    assert published["published"] == 1
    after = {r["id"]: r["updated_at"] for r in control.records(connection_id, "vendors")}
    assert before[x] < after[x] < after[y]  # published with the time it changed, older than Y
    assert _sync_status(fresh_sandbox)["last_successful_sync_at"] >= after[y]


def test_a_change_published_after_the_bookmark_passed_it_is_caught(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    connection_id = fresh_sandbox.connections[0]["id"]
    assert sync(db, fresh_sandbox, entities=["vendors"]).ok
    x, y = _late_change(fresh_sandbox, connection_id)
    second = sync(db, fresh_sandbox, entities=["vendors"])
    assert second.ok and second.report.records[(connection_id, "vendors")] == 1  # Y only: X is invisible
    bookmark = _bookmarks("vendors")[connection_id]["modified_after"]
    fresh_sandbox.control.makini_sync(connection_id)
    x_changed_at = {r["id"]: r["updated_at"] for r in fresh_sandbox.control.records(connection_id, "vendors")}[x]
    assert parse_iso(bookmark) < parse_iso(x_changed_at)  # a bookmark capped at the clock would be past X

    third = sync(db, fresh_sandbox, entities=["vendors"])
    assert third.ok
    assert warehouse_versions(db, "vendors", connection_id)[x] == x_changed_at
    assert third.report.records[(connection_id, "vendors")] == 1  # X; Y is read again and dropped
    assert third.tables["vendors"].unchanged >= 1 and third.tables["vendors"].loaded == 1
    assert_exact(db, fresh_sandbox, entities=["vendors"])


def test_versions_read_again_under_the_bound_load_nothing(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    connection_id = fresh_sandbox.connections[0]["id"]
    assert sync(db, fresh_sandbox, entities=["vendors"]).ok
    _late_change(fresh_sandbox, connection_id)
    assert sync(db, fresh_sandbox, entities=["vendors"]).ok
    again = sync(db, fresh_sandbox, entities=["vendors"])
    assert again.ok and again.tables["vendors"].loaded == 0
    assert again.report.unchanged[(connection_id, "vendors")] >= 1  # Y, at or above the bound, read again


@pytest.mark.parametrize("answer", ["error", "without_bound"])
def test_a_status_without_a_bound_falls_back_to_the_lookback_with_one_warning(
        fresh_sandbox, tmp_path, caplog, answer):
    db = tmp_path / "w.duckdb"
    connection_id = fresh_sandbox.connections[0]["id"]
    fresh_sandbox.control.set_sync_status_answer(connection_id, answer)
    with caplog.at_level(logging.WARNING):
        result = sync(db, fresh_sandbox, retry_policy=STATUS_FAILS_SOON)
    assert result.ok
    assert_exact(db, fresh_sandbox)
    warnings = [r for r in caplog.records if "gave no completeness bound" in r.getMessage()]
    assert len(warnings) == 1 and connection_id in warnings[0].getMessage(), [w.getMessage() for w in warnings]
    now = parse_iso(fresh_sandbox.control.info()["now"])
    for table in ("vendors", "purchase_orders"):
        bookmark = parse_iso(_bookmarks(table)[connection_id]["modified_after"])
        assert bookmark <= now - timedelta(days=1) + timedelta(minutes=1), (table, bookmark, now)


def test_the_configured_lookback_keeps_bookmarks_below_the_bound(fresh_sandbox, tmp_path, monkeypatch):
    db = tmp_path / "w.duckdb"
    monkeypatch.setenv("SOURCES__MAKINI__LOOKBACK_SECONDS", "7200")
    connection_id = fresh_sandbox.connections[0]["id"]
    fresh_sandbox.control.mutate(connection_id, "vendors", update=0.2, seed=3)
    assert sync(db, fresh_sandbox, entities=["vendors"]).ok
    bookmark = parse_iso(_bookmarks("vendors")[connection_id]["modified_after"])
    newest = max(parse_iso(r["updated_at"]) for r in fresh_sandbox.control.records(connection_id, "vendors"))
    assert bookmark <= newest - timedelta(hours=2), (bookmark, newest)
    again = sync(db, fresh_sandbox, entities=["vendors"])
    assert again.ok and again.tables["vendors"].loaded == 0 and again.tables["vendors"].unchanged > 0


def test_a_bad_lookback_fails_before_any_request(fresh_sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCES__MAKINI__LOOKBACK_SECONDS", "an hour")
    served = fresh_sandbox.control.requests_served(reset=True)["total"]
    with pytest.raises(ConfigurationError, match="lookback_seconds"):
        sync(tmp_path / "w.duckdb", fresh_sandbox)
    assert fresh_sandbox.control.requests_served()["total"] == 0, served


def test_the_bound_is_read_once_per_connection_and_run(fresh_sandbox, tmp_path):
    fresh_sandbox.control.requests_served(reset=True)
    assert sync(tmp_path / "w.duckdb", fresh_sandbox).ok
    served = fresh_sandbox.control.requests_served()["by_connection"]
    assert {c: counts.get("sync-status") for c, counts in served.items() if c != "_unauthenticated"} == {
        c["id"]: 1 for c in fresh_sandbox.connections}



def test_without_a_bound_the_last_one_read_still_caps_the_bookmark(fresh_sandbox, tmp_path):
    """Makini's own syncs may be failing when its status endpoint is: a lookback from
    now alone could pass the true bound, so the last bound read still caps the bookmark."""
    db = tmp_path / "w.duckdb"
    connection_id = fresh_sandbox.connections[0]["id"]
    assert sync(db, fresh_sandbox, entities=["vendors"]).ok
    last_bound = parse_iso(_sync_status(fresh_sandbox)["last_successful_sync_at"])
    fresh_sandbox.control.set_sync_status_answer(connection_id, "error")
    fresh_sandbox.control.advance_clock(3 * 86_400)
    fresh_sandbox.control.mutate(connection_id, "vendors", update=0.1, seed=8)
    assert sync(db, fresh_sandbox, entities=["vendors"], retry_policy=STATUS_FAILS_SOON).ok
    bookmark = parse_iso(_bookmarks("vendors")[connection_id]["modified_after"])
    assert bookmark <= last_bound - timedelta(days=1), (bookmark, last_bound)
