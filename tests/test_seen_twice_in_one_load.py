"""Records updated while a walk pages come round again later in the same walk (the
contract's keyset order); every destination ends exact, MySQL included, whose
merge fails on a key seen twice in one load."""

import threading

import pytest

from makini_sandbox import Sandbox
from makini_sync.run.sync import run_sync
from tests.destination_targets import DESTINATIONS, destination_target
from tests.sync_support import FAST_RETRIES

SIZES = {"purchase-orders": 30, "work-orders": 10, "assets": 10, "inventory-items": 700, "vendors": 250}
ENTITIES = ["vendors", "inventory_items"]


@pytest.fixture(params=DESTINATIONS)
def target(request, isolated_dlt, monkeypatch):
    with destination_target(request.param, isolated_dlt, monkeypatch, request) as t:
        yield t


def first_page_ids(sandbox, connection_id, slug, size):
    records = sandbox.control.truth(connection_id, slug, detail=True)["records"]
    return sorted(records, key=lambda rid: (records[rid]["updated_at"], rid))[:size]


def updating_after_first_page(sandbox, connection_id, pages: dict) -> threading.Thread:
    """Once the first page of each entity is served, update that page's records, so
    they move past the walk's cursor and are served again before it ends."""

    def run() -> None:
        todo = dict(pages)
        while todo:
            served = sandbox.control.requests_served()["by_connection"].get(connection_id, {})
            for slug, ids in list(todo.items()):
                if served.get(slug, 0) >= 1:
                    sandbox.control.mutate(connection_id, slug, ids=ids, update=1.0)
                    del todo[slug]
            threading.Event().wait(0.005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_records_seen_twice_in_one_walk_end_exact(target):
    with Sandbox(seed=9, sizes=SIZES, connections=1, in_process=True) as sandbox:
        connection_id = sandbox.connections[0]["id"]
        pages = {slug: first_page_ids(sandbox, connection_id, slug, size)
                 for slug, size in (("vendors", 100), ("inventory-items", 500))}
        pages["inventory-items"] = pages["inventory-items"][:100]
        sandbox.control.set_faults(seed=2, slow_rate=1.0, slow_seconds=0.25)  # time to update between pages
        sandbox.control.requests_served(reset=True)
        mutator = updating_after_first_page(sandbox, connection_id, pages)
        result = run_sync(target.profile, base_url=sandbox.base_url, api_token=sandbox.tokens,
                          entities=ENTITIES, retry_policy=FAST_RETRIES)
        mutator.join(timeout=30)
        sandbox.control.clear_faults()
        assert result.ok, result.report.failures
        served = sandbox.control.requests_served()["by_connection"][connection_id]
        # 250 vendors plus the 100 served again make a fourth page; 700 items plus 100, a second
        assert served["vendors"] >= 4 and served["inventory-items"] >= 2, served
        for table, slug in (("vendors", "vendors"), ("inventory_items", "inventory-items")):
            truth = sandbox.control.truth(connection_id, slug, detail=True)["records"]
            assert target.versions(table, connection_id) == {rid: r["updated_at"] for rid, r in truth.items()}
        second = run_sync(target.profile, base_url=sandbox.base_url, api_token=sandbox.tokens,
                          entities=ENTITIES, retry_policy=FAST_RETRIES)
        assert second.ok, second.report.failures
        assert sum(s.loaded for s in second.tables.values()) == 0  # nothing left over, nothing twice
