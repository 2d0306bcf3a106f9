"""Whole-table integrity statements survive DuckDB's memory cap on a large warehouse."""

import dlt
import duckdb
import pytest

from makini_sync.integrity.pruning import prune_superseded_children
from sources.makini.settings import ENTITIES

ORDERS = 300_000


@pytest.fixture()
def capped_duckdb(tmp_path, monkeypatch):
    """A warehouse with 300k orders and 1.2M line items, 1 in 97 of a superseded
    version, under a 4 MB DuckDB cap: the prune cannot run within it."""
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__DATABASE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"memory_limit": "4MB", "threads": 1}')
    destination = dlt.destinations.duckdb()
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:  # built without the cap
        con.execute("CREATE SCHEMA makini")
        con.execute(
            "CREATE TABLE makini.purchase_orders AS SELECT 'conn_1' AS connection_id, 'po_' || i AS id,"
            f" TIMESTAMPTZ '2026-01-01' + to_seconds(i) AS updated_at FROM range({ORDERS}) t(i)")
        con.execute(
            "CREATE TABLE makini.purchase_orders__line_items AS SELECT 'conn_1' AS connection_id,"
            " 'po_' || (i // 4) AS purchase_order_id, i % 4 AS line_number, TIMESTAMPTZ '2026-01-01'"
            " + to_seconds(i // 4 + CASE WHEN i % 97 = 0 THEN 1 ELSE 0 END) AS purchase_order_updated_at"
            f" FROM range({ORDERS * 4}) t(i)")
    pipeline = dlt.pipeline("headroom", destination=destination, dataset_name="makini")
    return pipeline


def test_prune_over_the_memory_cap_runs_with_headroom_and_keeps_the_cap(capped_duckdb, caplog):
    superseded = len(range(0, ORDERS * 4, 97))
    with capped_duckdb.sql_client() as client:
        with pytest.raises(Exception, match="Out of Memory Error"):  # the statement cannot run within the cap
            client.execute_sql(
                "DELETE FROM makini.purchase_orders__line_items l WHERE EXISTS (SELECT 1 FROM makini.purchase_orders p"
                " WHERE p.connection_id = l.connection_id AND p.id = l.purchase_order_id"
                " AND p.updated_at <> l.purchase_order_updated_at)")
        prune_superseded_children(client, [ENTITIES["purchase_orders"]],
                                  {"purchase_orders", "purchase_orders__line_items"})
        remaining = client.execute_sql("SELECT COUNT(*) FROM makini.purchase_orders__line_items")[0][0]
    assert remaining == ORDERS * 4 - superseded
    assert "too small for a whole-table statement" in caplog.text
    with capped_duckdb.sql_client() as client:  # a new connection has the configured cap again
        assert client.execute_sql("SELECT current_setting('memory_limit')")[0][0] in ("3.8 MiB", "4.0 MiB", "3.8MiB")
