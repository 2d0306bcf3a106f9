"""Incremental runs fetch only what changed since the bookmark, and end exact."""

from tests.sync_support import assert_exact, sync
from sources.makini.settings import ENTITIES


def test_second_run_fetches_only_changed_records(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    assert sync(db, fresh_sandbox).ok
    changed = {}
    for connection in fresh_sandbox.connections:
        for entity in ENTITIES.values():
            m = fresh_sandbox.control.mutate(connection["id"], entity.slug, update=0.01, insert=1, seed=5)
            changed[(connection["id"], entity.table)] = len(set(m["updated"]) | set(m["inserted"]))
    second = sync(db, fresh_sandbox)
    assert second.ok
    for (connection_id, table), n in changed.items():
        assert second.report.records[(connection_id, table)] == n, (table, second.report.records)
    assert_exact(db, fresh_sandbox)


def test_run_with_no_changes_loads_nothing(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    assert sync(db, fresh_sandbox).ok
    again = sync(db, fresh_sandbox)
    assert again.ok
    assert sum(again.report.records.values()) == 0
    assert all(stats.loaded == 0 for stats in again.tables.values()), again.tables
    assert_exact(db, fresh_sandbox)


def test_changed_line_items_leave_no_orphans(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    assert sync(db, fresh_sandbox, entities=["purchase_orders"]).ok
    connection = fresh_sandbox.connections[0]["id"]
    for seed in range(5):  # updates change the number of lines of some orders
        fresh_sandbox.control.mutate(connection, "purchase-orders", update=0.05, seed=seed)
        assert sync(db, fresh_sandbox, entities=["purchase_orders"]).ok
    from tests.sync_support import line_counts

    truth = fresh_sandbox.control.truth(connection, "purchase-orders", detail=True)["records"]
    assert line_counts(db, connection) == {rid: r["line_count"] for rid, r in truth.items() if r["line_count"]}
