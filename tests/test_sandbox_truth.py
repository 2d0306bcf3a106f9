"""The truth endpoint: count and order-independent checksum over (id, updated_at)."""
from __future__ import annotations

from makini_sandbox import Sandbox
from makini_sandbox.store import pair_hash


def served_checksum(client, entity: str) -> tuple[int, str]:
    """Recompute count and checksum from what the public API serves."""
    total, count, query = 0, 0, {"limit": 500}
    while True:
        body = client.get(f"/{entity}", params=query).json()
        for rec in body["data"]:
            total = (total + pair_hash(rec["id"], rec["updated_at"])) % 2**64
            count += 1
        if body["next_cursor"] is None:
            return count, f"{total:016x}"
        query = {"cursor": body["next_cursor"]}


def test_truth_matches_what_the_api_serves(sandbox, control, api_client):
    conn = sandbox.connections[2]["id"]
    truth = control.truth(conn, "purchase-orders")
    assert served_checksum(api_client(2), "purchase-orders") == (truth["count"], truth["checksum"])


def test_checksum_changes_when_and_only_when_data_changes(sandbox, control, api_client):
    conn, client, entity = sandbox.connections[2]["id"], api_client(2), "inventory-items"
    start = control.truth(conn, entity)
    served_checksum(client, entity)  # a read-only walk
    client.get("/connection"), client.get("/sync-status")
    assert control.truth(conn, entity) == start

    steps = [dict(update=0.0, ids=None, insert=1), dict(update=0.05), dict(soft_delete=0.05),
             dict(hard_delete=0.05)]
    previous = start
    for step in steps:
        done = control.mutate(conn, entity, **step)
        assert any(done.values())
        now = control.truth(conn, entity)
        assert now["checksum"] != previous["checksum"], step
        previous = now
    assert previous["count"] == start["count"] + 1 - len(done["hard_deleted"])

    empty = control.mutate(conn, entity)  # nothing asked, nothing changes
    assert not any(empty.values()) and control.truth(conn, entity) == previous


def test_truth_detail_lists_versions_and_line_counts(sandbox, control, api_client):
    conn = sandbox.connections[2]["id"]
    detail = control.truth(conn, "purchase-orders", detail=True)
    assert len(detail["records"]) == detail["count"]
    served = {r["id"]: r for r in api_client(2).get("/purchase-orders", params={"limit": 500}).json()["data"]}
    for rid, rec in served.items():
        want = detail["records"][rid]
        assert want == {"updated_at": rec["updated_at"], "deleted_at": rec["deleted_at"],
                        "line_count": len(rec["line_items"])}


def test_same_seed_same_truth_other_seed_other_truth():
    sizes = {"purchase-orders": 50, "work-orders": 10, "assets": 10, "inventory-items": 10, "vendors": 10}
    truths = []
    for seed in (5, 5, 6):
        with Sandbox(seed=seed, sizes=sizes, connections=1, in_process=True) as sb:
            truths.append((sb.tokens, sb.control.truth(sb.connections[0]["id"], "purchase-orders")))
    assert truths[0] == truths[1]
    assert truths[0][0] != truths[2][0] and truths[0][1] != truths[2][1]
