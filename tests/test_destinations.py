"""One scenario on all five destinations: each ends equal to the sandbox truth, and to the others.

Full sync; then updates, soft deletes, hard deletes (announced as deltas, as
webhooks announce them), inserts and line-item changes; an incremental sync;
then deliberately replayed stale versions (the pages of the first sync, and
creates of the hard-deleted records). Small data: the MongoDB stand-in does
about 1k upserts/s.
"""

import pytest

from makini_sandbox import Sandbox
from makini_sync.integrity.deltas import Delete, Upsert, load_deltas
from makini_sync.run.sync import run_sync
from sources.makini.settings import ENTITIES
from tests.destination_targets import DESTINATIONS, destination_target
from tests.sync_support import FAST_RETRIES

SIZES = {"purchase-orders": 120, "work-orders": 40, "assets": 30, "inventory-items": 40, "vendors": 20}


def raw_records(sandbox, connection, entity):
    """Every record as the list endpoint returns it now (to replay later)."""
    import httpx

    records, cursor = [], None
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {connection['token']}"}) as http:
        while True:
            params = {"limit": entity.max_page_size, **({"cursor": cursor} if cursor else {})}
            body = http.get(entity.path, params=params).json()
            records.extend(body["data"])
            cursor = body["next_cursor"]
            if not cursor:
                return records


def truth_of(sandbox, connection):
    out = {}
    for entity in ENTITIES.values():
        records = sandbox.control.truth(connection["id"], entity.slug, detail=True)["records"]
        out[entity.table] = {rid: r["updated_at"] for rid, r in records.items()}
        if entity.children:
            out["line_counts"] = {rid: r["line_count"] for rid, r in records.items() if r["line_count"]}
    return out


def contents(target, connection):
    out = {e.table: target.versions(e.table, connection["id"]) for e in ENTITIES.values()}
    out["line_counts"] = target.line_counts(connection["id"])
    return out


@pytest.fixture(params=DESTINATIONS)
def target(request, isolated_dlt, monkeypatch):
    with destination_target(request.param, isolated_dlt, monkeypatch, request) as t:
        yield t


RESULTS: dict = {}


def test_scenario_ends_equal_to_the_truth(target):
    with Sandbox(seed=5, sizes=SIZES, connections=1, in_process=True) as sandbox:
        connection = sandbox.connections[0]
        first = run_sync(target.profile, base_url=sandbox.base_url, api_token=sandbox.tokens, retry_policy=FAST_RETRIES)
        assert first.ok, first.report.failures
        assert contents(target, connection) == truth_of(sandbox, connection)
        stale = {e.table: raw_records(sandbox, connection, e) for e in ENTITIES.values()}

        deletes = []
        for entity in ENTITIES.values():
            changed = sandbox.control.mutate(connection["id"], entity.slug, update=0.2, insert=3,
                                             soft_delete=0.1, hard_delete=0.1, seed=17)
            deletes.extend((entity, rid) for rid in changed["hard_deleted"])
        assert deletes and any(e.children for e, _ in deletes)
        # hard deletes reach the warehouse as deltas (the webhook processor's path)
        now = sandbox.control.info()["now"]
        load_deltas(target.profile, [Delete(connection["id"], e, rid, now) for e, rid in deletes])
        second = run_sync(target.profile, base_url=sandbox.base_url, api_token=sandbox.tokens, retry_policy=FAST_RETRIES)
        assert second.ok, second.report.failures
        truth = truth_of(sandbox, connection)
        assert contents(target, connection) == truth

        # stale versions replayed: the first sync's records, and creates of deleted ones
        replay = [Upsert(connection["id"], ENTITIES[table], r) for table, records in stale.items() for r in records]
        load_deltas(target.profile, replay)
        assert contents(target, connection) == truth
        # timestamps come from the sandbox clock; ids and line counts are seeded
        RESULTS[target.name] = {
            table: sorted(v) if table != "line_counts" else v for table, v in contents(target, connection).items()
        }


def test_destinations_agree_with_each_other():
    if len(RESULTS) < 2:
        pytest.skip("fewer than two destinations ran the scenario")
    first, *others = RESULTS
    for name in others:
        assert RESULTS[name] == RESULTS[first], f"{name} differs from {first}"
