"""PostgreSQL tables get an index on their merge keys (dlt creates none), so
merges, prunes and sweeps touch the rows they need instead of whole tables."""

import psycopg

from makini_sandbox import Sandbox
from makini_sync.deltas import Delete, load_deltas
from makini_sync.sync import run_sync
from sources.makini.settings import ENTITIES
from tests.destination_targets import POSTGRES_URL, destination_target
from tests.sync_support import FAST_RETRIES, isolated_dlt  # noqa: F401

SIZES = {"purchase-orders": 30, "work-orders": 10, "assets": 10, "inventory-items": 10, "vendors": 10}


def merge_key_indexes() -> dict[str, str]:
    with psycopg.connect(POSTGRES_URL) as conn:
        rows = conn.execute("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'makini'").fetchall()
    return {table: definition for table, definition in rows if "__merge_key" in definition}


def test_postgres_tables_are_indexed_on_their_keys(isolated_dlt, monkeypatch, request):
    with destination_target("postgres", isolated_dlt, monkeypatch, request) as target, \
            Sandbox(seed=3, sizes=SIZES, connections=1, in_process=True) as sandbox:
        connection = sandbox.connections[0]["id"]
        for _ in range(2):  # the second run finds the indexes there
            assert run_sync(target.profile, base_url=sandbox.base_url, api_token=sandbox.tokens, retry_policy=FAST_RETRIES).ok
        some_order = next(iter(sandbox.control.truth(connection, "purchase-orders", detail=True)["records"]))
        load_deltas(target.profile, [Delete(connection, ENTITIES["purchase_orders"], some_order, sandbox.control.info()["now"])])
        indexes = merge_key_indexes()
    assert set(indexes) == {e.table for e in ENTITIES.values()} | {"purchase_orders__line_items", "_makini_tombstones"}
    assert "(connection_id, id)" in indexes["purchase_orders"]
    assert "(connection_id, purchase_order_id)" in indexes["purchase_orders__line_items"]
    assert "(connection_id, entity, id)" in indexes["_makini_tombstones"]
