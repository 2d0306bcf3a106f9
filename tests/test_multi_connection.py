"""Several connections: isolated state and rows, and one failure stops no other."""

import duckdb

from sources.makini.settings import ENTITIES
from tests.sync_support import assert_exact, sync, warehouse_versions


def test_connections_are_isolated(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    assert sync(db, fresh_sandbox).ok
    a, b = (c["id"] for c in fresh_sandbox.connections)
    fresh_sandbox.control.mutate(a, "vendors", update=0.1, seed=2)
    second = sync(db, fresh_sandbox)
    assert second.report.records[(a, "vendors")] > 0
    assert second.report.records[(b, "vendors")] == 0  # b's bookmark was not disturbed by a
    with duckdb.connect(str(db), read_only=True) as con:
        fields = dict(con.execute(
            "SELECT connection_id, string_agg(DISTINCT custom_fields, '|') FROM makini.purchase_orders GROUP BY 1"
        ).fetchall())
    assert set(fields) == {a, b}
    assert_exact(db, fresh_sandbox)


def test_one_failing_connection_does_not_stop_the_others(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    a, b = (c["id"] for c in fresh_sandbox.connections)
    fresh_sandbox.control.set_connection_status(a, "reauthorization_required")
    result = sync(db, fresh_sandbox)
    assert not result.ok
    assert result.report.failed_connections == [a]
    # GET /api/v1/connection already says so: no list request is made, every entity is skipped
    breaker = result.report.skipped[a]
    assert "reconnect" in str(breaker.cause)
    assert sorted(breaker.skipped) == sorted(e.table for e in ENTITIES.values())
    assert_exact(db, fresh_sandbox, connection_ids={b})
    assert warehouse_versions(db, "vendors", a) == {}
    # once reconnected, the next run catches up
    fresh_sandbox.control.set_connection_status(a, "active")
    assert sync(db, fresh_sandbox).ok
    assert_exact(db, fresh_sandbox)


def test_a_connection_configured_twice_is_walked_once(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    fresh_sandbox.control.requests_served(reset=True)
    result = sync(db, fresh_sandbox, tokens=[*fresh_sandbox.tokens, fresh_sandbox.tokens[0]])
    assert result.ok, result.report.failures
    assert result.connections == 2
    assert_exact(db, fresh_sandbox)
    twice, once = (fresh_sandbox.control.requests_served()["by_connection"][c["id"]]
                   for c in fresh_sandbox.connections)
    assert twice["connection"] == 2  # looked up once per token
    assert {k: v for k, v in twice.items() if k != "connection"} == {k: v for k, v in once.items() if k != "connection"}
