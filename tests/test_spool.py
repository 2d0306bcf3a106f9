"""The page spool: replays exactly what it holds since its base, and is trimmed by committed loads."""

import tracemalloc

import pyarrow as pa
import pytest

from sources.makini.body_page import BodyPage
from sources.makini.spool import _FRAME, _MAGIC, LOG_NAME, Spool, SpoolChanged, SpooledPage, settle_spools

BASE = {"cursor": None, "modified_after": None, "backfill": False}


def page(n: int, cursor):
    return SpooledPage(pa.table({"id": [f"r{n}"], "updated_at": ["2026-03-01T00:00:00.000Z"]}), cursor, 9, None, f"req_{n}")


def spooled(tmp_path, cursors: list):
    """A vendors spool on BASE holding one page per cursor, and its log's path."""
    spool = Spool(tmp_path, "conn_a", "vendors")
    spool.start(BASE)
    for n, cursor in enumerate(cursors):
        spool.append(page(n, cursor))
    return spool, tmp_path / "conn_a" / "vendors" / LOG_NAME


def test_replays_pages_in_order_and_only_for_its_base(tmp_path):
    spool = Spool(tmp_path, "conn_a", "vendors")
    spool.start(BASE)
    for n, cursor in enumerate(["c1", "c2", None]):
        spool.append(page(n, cursor))
    replay = Spool(tmp_path, "conn_a", "vendors").load(BASE)
    assert [p.records["id"][0].as_py() for p in replay] == ["r0", "r1", "r2"]
    assert [p.cursor for p in replay] == ["c1", "c2", None]
    assert list(Spool(tmp_path, "conn_a", "vendors").load({**BASE, "cursor": "elsewhere"})) == []  # stale: cleared
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


def test_a_torn_or_damaged_frame_drops_itself_and_what_follows_and_appends_go_on(tmp_path):
    spool, log = spooled(tmp_path, ["c1", "c2"])
    intact = log.stat().st_size
    spool.append(page(2, "c3"))
    with open(log, "r+b") as f:  # a crash cut the last write short
        f.truncate(log.stat().st_size - 5)
    resumed = Spool(tmp_path, "conn_a", "vendors")
    assert [p.cursor for p in resumed.load(BASE)] == ["c1", "c2"]
    assert log.stat().st_size == intact  # the torn tail is gone
    resumed.append(page(3, "c4"))
    assert [p.records["id"][0].as_py() for p in Spool(tmp_path, "conn_a", "vendors").load(BASE)] == ["r0", "r1", "r3"]

    data = bytearray(log.read_bytes())
    data[intact - 3] ^= 0xFF  # a flipped byte inside the second page: its CRC fails
    log.write_bytes(bytes(data))
    assert [p.cursor for p in Spool(tmp_path, "conn_a", "vendors").load(BASE)] == ["c1"]


def test_a_spool_whose_base_frame_is_torn_is_stale(tmp_path):
    spool = Spool(tmp_path, "conn_a", "vendors")
    spool.start(BASE)
    log = tmp_path / "conn_a" / "vendors" / LOG_NAME
    log.write_bytes(log.read_bytes()[:-1])
    assert list(Spool(tmp_path, "conn_a", "vendors").load(BASE)) == []
    assert not log.exists()


def test_list_pages_round_trip(tmp_path):
    spool = Spool(tmp_path, "conn_a", "vendors")
    spool.start(BASE)
    records = [{"id": "v1", "nested": {"a": [1, 2]}}, {"id": 2}]
    spool.append(SpooledPage(records, None, None, "Sun, 29 Nov 2026 01:00:00 GMT", "req_x"))
    (replayed,) = Spool(tmp_path, "conn_a", "vendors").load(BASE)
    # replayed as the records' text, parsed where the walk converts it (page_workers.py)
    assert (replayed.records.records(), replayed.cursor, replayed.date, replayed.request_id) == (
        records, None, "Sun, 29 Nov 2026 01:00:00 GMT", "req_x")


def test_a_frame_whose_length_runs_past_the_file_is_a_torn_tail(tmp_path):
    spool, log = spooled(tmp_path, ["c1", "c2"])
    intact = log.stat().st_size
    with open(log, "ab") as f:  # a damaged frame whose length claims 4 EiB: dropped without reading it
        f.write(_FRAME.pack(_MAGIC, 2, 2**62, 0) + b"{}")
    assert [p.cursor for p in Spool(tmp_path, "conn_a", "vendors").load(BASE)] == ["c1", "c2"]
    assert log.stat().st_size == intact


def test_a_spool_rebases_on_a_cursor_among_its_pages(tmp_path):
    spool = Spool(tmp_path, "conn_a", "vendors")
    spool.start(BASE)
    for n, cursor in enumerate(["c1", "c2", "c3"]):
        spool.append(page(n, cursor))
    replay = Spool(tmp_path, "conn_a", "vendors").load({**BASE, "cursor": "c1"})
    assert [(p.cursor, p.records["id"][0].as_py()) for p in replay] == [("c2", "r1"), ("c3", "r2")]


def test_loading_a_large_spool_holds_no_page_until_the_walk_reaches_it(tmp_path):
    spool = Spool(tmp_path, "conn_a", "purchase_orders", fsync=False)
    spool.start(BASE)
    big = pa.table({"id": [f"r{i}" for i in range(20_000)], "note": ["x" * 40] * 20_000})  # about 1 MB
    for n in range(30):
        spool.append(SpooledPage(big, f"c{n}", None, None, None))
    tracemalloc.start()
    try:
        replay = Spool(tmp_path, "conn_a", "purchase_orders").load(BASE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert replay.last_cursor == "c29"
    assert peak < 3 * big.nbytes, peak  # one frame read at a time, not the 30 MB log


def test_a_log_changed_after_loading_is_refused_not_misread(tmp_path):
    spool = Spool(tmp_path, "conn_a", "vendors")
    spool.start(BASE)
    for n, cursor in enumerate(["c1", "c2"]):
        spool.append(page(n, cursor))
    replay = Spool(tmp_path, "conn_a", "vendors").load(BASE)
    rewritten = Spool(tmp_path, "conn_a", "vendors")
    rewritten.start(BASE)
    for n, cursor in enumerate(["c1", "c2"]):
        rewritten.append(page(n + 7, cursor))  # same shape, other records
    with pytest.raises(SpoolChanged):
        list(replay)


def test_a_page_kept_as_the_text_of_its_records_replays_as_the_api_sent_it(tmp_path):
    data = b'[{"id": "r1", "n": 123456789012345678901234567890, "x": 1.50}]'
    spool = Spool(tmp_path, "conn_a", "purchase_orders")
    spool.start(BASE)
    spool.append(SpooledPage(BodyPage(data, "req_1"), "c1", None, None, "req_1"))
    (replayed,) = Spool(tmp_path, "conn_a", "purchase_orders").load(BASE)
    assert replayed.records == BodyPage(data, "req_1")  # byte for byte: nothing parsed or printed again
    assert replayed.records.records() == [{"id": "r1", "n": 123456789012345678901234567890, "x": 1.5}]
