"""The page spool: replays exactly what it holds since its base, and is trimmed by committed loads."""

import pyarrow as pa

from sources.makini.spool import Spool, SpooledPage, settle_spools

BASE = {"cursor": None, "modified_after": None, "backfill": False}


def page(n: int, cursor):
    return SpooledPage(pa.table({"id": [f"r{n}"], "updated_at": ["2026-03-01T00:00:00.000Z"]}), cursor, 9, None, f"req_{n}")


def test_replays_pages_in_order_and_only_for_its_base(tmp_path):
    spool = Spool(tmp_path, "conn_a", "vendors")
    spool.start(BASE)
    for n, cursor in enumerate(["c1", "c2", None]):
        spool.append(page(n, cursor))
    replay = Spool(tmp_path, "conn_a", "vendors").load(BASE)
    assert [p.records["id"][0].as_py() for p in replay] == ["r0", "r1", "r2"]
    assert [p.cursor for p in replay] == ["c1", "c2", None]
    assert Spool(tmp_path, "conn_a", "vendors").load({**BASE, "cursor": "elsewhere"}) == []  # stale: cleared
    assert not (tmp_path / "conn_a" / "vendors").exists()


def test_settling_after_a_load_keeps_pages_fetched_ahead(tmp_path):
    spool = Spool(tmp_path, "conn_a", "vendors")
    spool.start(BASE)
    for n, cursor in enumerate(["c1", "c2", "c3"]):
        spool.append(page(n, cursor))
    committed = {**BASE, "cursor": "c2"}
    settle_spools(tmp_path, {("conn_a", "vendors"): committed})
    assert [p.cursor for p in Spool(tmp_path, "conn_a", "vendors").load(committed)] == ["c3"]
    settle_spools(tmp_path, {("conn_a", "vendors"): None})  # the walk finished and was loaded
    assert not (tmp_path / "conn_a" / "vendors").exists()
