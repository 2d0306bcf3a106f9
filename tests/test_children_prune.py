"""Pruning line items of superseded order versions: everywhere (the sync), or
only for the orders a webhook batch touched."""

import dlt
import pytest

from makini_sync.integrity.pruning import prune_superseded_children
from makini_sync.integrity.fence import TOMBSTONES, sweep_tombstoned
from sources.makini.settings import ENTITIES

PO = ENTITIES["purchase_orders"]
TABLES = {"purchase_orders", "purchase_orders__line_items", TOMBSTONES}


@pytest.fixture()
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    pipeline = dlt.pipeline("prune", destination=dlt.destinations.duckdb(str(tmp_path / "p.duckdb")), dataset_name="makini")
    with pipeline.sql_client() as sql:
        sql.execute_sql("CREATE SCHEMA IF NOT EXISTS makini")
        sql.execute_sql("CREATE TABLE makini.purchase_orders (connection_id VARCHAR, id VARCHAR, updated_at TIMESTAMPTZ)")
        sql.execute_sql(
            "CREATE TABLE makini.purchase_orders__line_items (connection_id VARCHAR, purchase_order_id VARCHAR,"
            " line_number BIGINT, purchase_order_updated_at TIMESTAMPTZ)")
        sql.execute_sql(f"CREATE TABLE makini.{TOMBSTONES} (connection_id VARCHAR, entity VARCHAR, id VARCHAR, updated_at TIMESTAMPTZ)")
        # orders a, b (conn_1) and a (conn_2) moved to a new version; each still has a line of the old one
        sql.execute_sql("INSERT INTO makini.purchase_orders VALUES ('conn_1', 'a', '2026-02-01'), ('conn_1', 'b', '2026-02-01'),"
                        " ('conn_2', 'a', '2026-02-01')")
        sql.execute_sql(
            "INSERT INTO makini.purchase_orders__line_items VALUES"
            " ('conn_1', 'a', 1, '2026-02-01'), ('conn_1', 'a', 2, '2026-01-01'),"
            " ('conn_1', 'b', 1, '2026-02-01'), ('conn_1', 'b', 2, '2026-01-01'),"
            " ('conn_2', 'a', 1, '2026-02-01'), ('conn_2', 'a', 2, '2026-01-01')")
        yield sql


def lines(sql):
    return sorted(sql.execute_sql(
        "SELECT connection_id, purchase_order_id, line_number FROM makini.purchase_orders__line_items"))


def test_prune_with_keys_touches_only_those_orders(client):
    prune_superseded_children(client, [PO], TABLES, keys={"purchase_orders": {"conn_1": ["a"]}})
    assert lines(client) == [("conn_1", "a", 1), ("conn_1", "b", 1), ("conn_1", "b", 2),
                             ("conn_2", "a", 1), ("conn_2", "a", 2)]
    prune_superseded_children(client, [PO], TABLES)  # the sync's pass: every order
    assert lines(client) == [("conn_1", "a", 1), ("conn_1", "b", 1), ("conn_2", "a", 1)]


def test_sweep_with_keys_applies_only_those_tombstones(client):
    client.execute_sql(f"INSERT INTO makini.{TOMBSTONES} VALUES ('conn_1', 'purchase_orders', 'a', '2026-03-01'),"
                       " ('conn_1', 'purchase_orders', 'b', '2026-03-01')")
    sweep_tombstoned(client, [PO], TABLES, keys={"purchase_orders": {"conn_1": ["b"]}})
    assert sorted(client.execute_sql("SELECT connection_id, id FROM makini.purchase_orders")) == [
        ("conn_1", "a"), ("conn_2", "a")]
    assert ("conn_1", "b", 1) not in lines(client) and ("conn_1", "a", 1) in lines(client)
    sweep_tombstoned(client, [PO], TABLES)
    assert sorted(client.execute_sql("SELECT connection_id, id FROM makini.purchase_orders")) == [("conn_2", "a")]
