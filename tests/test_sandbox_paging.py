"""Keyset paging: exact under concurrent mutation, page-size caps, modified_after, total_count."""
from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest


def walk(client, entity: str, **params) -> list[dict]:
    """Every page of one walk, as parsed bodies."""
    pages = []
    query = dict(params)
    while True:
        resp = client.get(f"/{entity}", params=query)
        assert resp.status_code == 200, resp.text
        pages.append(resp.json())
        if pages[-1]["next_cursor"] is None:
            return pages
        query = {"cursor": pages[-1]["next_cursor"]}


def records(pages: list[dict]) -> list[dict]:
    return [r for p in pages for r in p["data"]]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_walk_is_exact_while_records_change_between_pages(sandbox, control, api_client, seed):
    conn = sandbox.connections[1]["id"]
    entity = "purchase-orders"
    client = api_client(1)
    rng = random.Random(seed)
    before = control.truth(conn, entity, detail=True)["records"]
    existed, changed, hard_deleted = set(before), set(), set()
    returned: list[dict] = []
    query = {"limit": rng.choice([23, 37, 50])}
    page_no = 0
    while True:
        resp = client.get(f"/{entity}", params=query)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        returned.extend(body["data"])
        if body["next_cursor"] is None:
            break
        query = {"cursor": body["next_cursor"]}
        page_no += 1
        # Between pages: random changes, plus named changes to records both behind and ahead of the cursor.
        done = control.mutate(conn, entity, update=0.02, soft_delete=0.01, hard_delete=0.01,
                              insert=rng.randint(0, 3), seed=seed * 1000 + page_no)
        live = [i for i in control.truth(conn, entity, detail=True)["records"]]
        named = control.mutate(conn, entity, update=1.0, ids=rng.sample(live, 2), seed=page_no)
        for batch in (done, named):
            existed |= set(batch["inserted"])
            changed |= set(batch["updated"]) | set(batch["soft_deleted"]) | set(batch["inserted"])
            hard_deleted |= set(batch["hard_deleted"])
    after = control.truth(conn, entity, detail=True)["records"]
    assert page_no > 10 and changed and hard_deleted, "the walk must actually race with mutations"

    keys = [(r["updated_at"], r["id"]) for r in returned]
    assert keys == sorted(keys) and len(set(keys)) == len(keys), "keys must strictly ascend across the walk"
    assert {r["id"] for r in returned} <= existed, "returned a record that never existed"
    last_version = {r["id"]: r["updated_at"] for r in returned}
    for rid, final in after.items():  # alive at the end: its final version is the last one returned
        assert last_version.get(rid) == final["updated_at"], rid
    counts: dict[str, int] = {}
    for r in returned:
        counts[r["id"]] = counts.get(r["id"], 0) + 1
    assert {rid for rid, n in counts.items() if n > 1} <= changed, "only changed records may come twice"
    untouched = set(before) - changed - hard_deleted
    assert all(counts[rid] == 1 and last_version[rid] == before[rid]["updated_at"] for rid in untouched)
    assert set(last_version) - set(after) <= hard_deleted


def test_records_sharing_updated_at_are_ordered_by_id(sandbox, api_client):
    data = records(walk(api_client(0), "assets", limit=7))
    keys = [(r["updated_at"], r["id"]) for r in data]
    assert keys == sorted(keys)
    stamps = [r["updated_at"] for r in data]
    assert len(set(stamps)) < len(stamps), "seed data should include ties so the tiebreak is exercised"


@pytest.mark.parametrize("entity,cap,size", [("purchase-orders", 500, 600), ("vendors", 100, 130),
                                             ("work-orders", 250, 260)])
def test_limit_above_the_cap_is_clamped_not_refused(api_client, entity, cap, size):
    resp = api_client(0).get(f"/{entity}", params={"limit": 10_000})
    assert resp.status_code == 200
    assert len(resp.json()["data"]) == cap and resp.json()["next_cursor"]


def test_limit_defaults_to_100(api_client):
    body = api_client(0).get("/purchase-orders").json()
    assert len(body["data"]) == 100 and body["next_cursor"]


def test_cursor_carries_limit_and_modified_after(sandbox, api_client):
    client = api_client(0)
    first = client.get("/inventory-items", params={"limit": 200}).json()
    boundary = first["data"][60]["updated_at"]
    pages = walk(client, "inventory-items", limit=9, modified_after=boundary)
    assert all(len(p["data"]) <= 9 for p in pages) and len(pages) > 2
    assert all(r["updated_at"] >= boundary for r in records(pages))
    assert len(records(pages)) == pages[0]["total_count"]


def test_modified_after_is_inclusive_at_the_millisecond(sandbox, control, api_client):
    client, conn = api_client(0), sandbox.connections[0]["id"]
    truth = control.truth(conn, "work-orders", detail=True)["records"]
    boundary = sorted(r["updated_at"] for r in truth.values())[len(truth) // 2]
    expected = sorted((r["updated_at"], rid) for rid, r in truth.items() if r["updated_at"] >= boundary)

    got = records(walk(client, "work-orders", modified_after=boundary, limit=50))
    assert [(r["updated_at"], r["id"]) for r in got] == expected
    assert got[0]["updated_at"] == boundary, "a record exactly at the boundary is included"

    just_after = (datetime.fromisoformat(boundary) + timedelta(milliseconds=1)).isoformat()  # "+00:00" form
    later = records(walk(client, "work-orders", modified_after=just_after, limit=250))
    assert boundary not in {r["updated_at"] for r in later}
    assert len(later) == sum(1 for k in expected if k[0] > boundary)


def test_total_count_counts_the_whole_query_and_can_be_absent(sandbox, control, api_client):
    body = api_client(0).get("/vendors", params={"limit": 5}).json()
    assert body["total_count"] == control.truth(sandbox.connections[0]["id"], "vendors")["count"]
    assert "total_count" not in api_client(2).get("/vendors").json(), "the third connection cannot count"
    conn = sandbox.connections[0]["id"]
    control.set_total_count(conn, False)
    try:
        assert "total_count" not in api_client(0).get("/vendors").json()
    finally:
        control.set_total_count(conn, True)


def test_hard_deleted_records_leave_lists_and_soft_deleted_stay(sandbox, control, api_client):
    conn, client = sandbox.connections[0]["id"], api_client(0)
    ids = [r["id"] for r in client.get("/assets", params={"limit": 4}).json()["data"]]
    control.mutate(conn, "assets", hard_delete=1.0, ids=ids[:2])
    control.mutate(conn, "assets", soft_delete=1.0, ids=ids[2:])
    listed = {r["id"]: r for r in records(walk(client, "assets", limit=500))}
    assert not set(ids[:2]) & set(listed)
    assert all(listed[i]["deleted_at"] and listed[i]["deleted_at"] == listed[i]["updated_at"] for i in ids[2:])


def test_concurrent_walkers_and_writer_each_see_an_exact_walk(sandbox, control):
    """Several clients page at once while another thread mutates: each walk is still exact."""
    import threading

    import httpx

    conn, entity = sandbox.connections[0]["id"], "work-orders"
    stop = threading.Event()

    def writer() -> None:
        with type(control)(sandbox.base_url) as ctl:
            i = 0
            while not stop.is_set():
                ctl.mutate(conn, entity, update=0.02, insert=1, soft_delete=0.005, hard_delete=0.005, seed=i)
                i += 1

    def walker(results: list) -> None:
        with httpx.Client(base_url=sandbox.base_url + "/api/v1",
                          headers={"Authorization": f"Bearer {sandbox.tokens[0]}"}) as client:
            results.extend(records(walk(client, entity, limit=11)))

    thread = threading.Thread(target=writer)
    thread.start()
    outputs: list[list] = [[] for _ in range(4)]
    walkers = [threading.Thread(target=walker, args=(out,)) for out in outputs]
    for w in walkers:
        w.start()
    for w in walkers:
        w.join()
    stop.set()
    thread.join()
    final = control.truth(conn, entity, detail=True)["records"]
    for out in outputs:
        keys = [(r["updated_at"], r["id"]) for r in out]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        seen = {r["id"] for r in out}
        # Anything alive now whose final version predates the walk's last key was returned.
        assert all(rid in seen for rid, r in final.items() if (r["updated_at"], rid) <= keys[-1])
