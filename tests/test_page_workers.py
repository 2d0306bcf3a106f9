"""Pages Arrow's reader refuses are prepared in worker processes: the tables are the ones the
sync's own process makes, a worker that dies loses no page, and a page's paging fields read
without parsing it agree with the full parse."""

import logging
import os
import signal
import time

import duckdb
import multiprocessing
import orjson
import pytest

from makini_sandbox import Sandbox
from sources.makini import exact_json
from sources.makini.body_page import BodyPage, envelope
from sources.makini.page_workers import PageWorkers
from tests.sync_support import assert_exact, sync

SIZES = {"purchase-orders": 1500, "work-orders": 300, "assets": 300, "inventory-items": 300, "vendors": 100}
RUN_COLUMNS = {"first_seen", "request_id", "_dlt_load_id", "_dlt_id"}  # differ from one run to the next


def tables(db_path) -> dict[str, list]:
    """Every table of the dataset, its rows sorted, without the columns a run stamps."""
    with duckdb.connect(str(db_path), read_only=True) as db:
        names = [r[0] for r in db.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'makini' "
            "AND table_name NOT LIKE '_dlt%' AND table_name <> '_makini_sync_runs'").fetchall()]
        out = {}
        for name in sorted(names):
            types = [r for r in db.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'makini' AND table_name = ? "
                "ORDER BY column_name", [name]).fetchall() if r[0] not in RUN_COLUMNS]
            listed = ", ".join(f'"{c}"' for c, _ in types)
            out[name] = [types, sorted(db.execute(f"SELECT {listed} FROM makini.{name}").fetchall(), key=repr)]
        return out


def changes(result) -> list[tuple]:
    return sorted((c.connection_id, c.table_name, c.column_name, c.change, c.kind) for c in result.report.schema_changes)


@pytest.fixture(autouse=True)
def pages_left_to_workers(monkeypatch):
    """The pages a worker prepares are those the lifted read cannot plan for (a key field
    that drifts in type, free-form JSON inside items); the sandbox's drift shapes are all
    planned for, so these tests turn the planning off (lifted_read.learn)."""
    from sources.makini import lifted_read
    monkeypatch.setattr(lifted_read, "learn", lambda *args, **kwargs: None)


@pytest.fixture(scope="module", params=["drift_int64", "chaos"])
def drifting(request):
    """A connection whose pages Arrow's reader refuses: types that drift, integers past 64 bits.
    One connection: with two, which walk's page comes first decides a column's type, run by run."""
    with Sandbox(seed=83, sizes=SIZES, connections=1, shapes=request.param, in_process=True) as sandbox:
        yield sandbox


def test_refused_pages_land_the_same_through_a_worker(drifting, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "here"))
    here = sync(tmp_path / "here.duckdb", drifting, conversion_processes=0)
    assert here.ok and not any("worker" in path for path in here.report.paths), here.report.paths
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "worker"))
    with PageWorkers(1) as workers:
        assert workers.wait_ready(120), "the worker did not start"
        in_worker = sync(tmp_path / "worker.duckdb", drifting, page_workers=workers)
        assert workers.wait_ready(0), "the run stopped the caller's workers, which are kept warm across runs"
    assert in_worker.ok
    worker_pages = sum(n for path, n in in_worker.report.paths.items() if path.endswith("+worker"))
    assert worker_pages >= 8, in_worker.report.paths  # every refused page went through the worker
    assert tables(tmp_path / "worker.duckdb") == tables(tmp_path / "here.duckdb")
    assert changes(in_worker) == changes(here)
    assert_exact(tmp_path / "worker.duckdb", drifting)


@pytest.mark.parametrize("drifting", ["drift_int64"], indirect=True)
def test_a_worker_that_died_costs_no_page(drifting, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    with PageWorkers(1) as workers:
        assert workers.wait_ready(120), "the worker did not start"
        (worker,) = multiprocessing.active_children()
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)
        with caplog.at_level(logging.WARNING, logger="sources.makini.page_workers"):
            result = sync(tmp_path / "w.duckdb", drifting, page_workers=workers)
    assert result.ok
    assert not any("worker" in path for path in result.report.paths), result.report.paths
    assert any("page conversion workers stopped" in r.getMessage() for r in caplog.records)
    assert_exact(tmp_path / "w.duckdb", drifting)


@pytest.mark.parametrize("drifting", ["drift_int64"], indirect=True)
def test_the_run_stops_the_workers_it_started(drifting, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    result = sync(tmp_path / "w.duckdb", drifting, conversion_processes=1)
    assert result.ok
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []


BODIES = [
    {"data": [], "next_cursor": "c2", "total_count": 7},
    {"next_cursor": None, "data": [{"id": 1}]},
    {"data": [{"next_cursor": "inside"}], "total_count": 3},
    {"data": [{"id": "x"}], "next_cursor": 12345678901234567890123},
    {"data": [{"id": "x"}], "next_cursor": "é✓\u0000"},
    {"data": [{"id": "x"}], "next_cursor": {"nested": [1, 2]}, "total_count": 1.5},
]


@pytest.mark.parametrize("body", BODIES)
def test_paging_fields_read_without_the_records_agree_with_the_full_parse(body):
    data, cursor, total = envelope(exact_json.dumps(body))
    assert (cursor, total) == (body.get("next_cursor"), body.get("total_count"))
    assert BodyPage(data).records() == body["data"]


@pytest.mark.parametrize("text", [
    b'{"data": {"id": 1}}', b'[{"data": []}]', b'{"data": [1,}', b'{"next_cursor": "c"}', b'{"data": [] ',
    b'{"data": [], "next_cursor": "a", "next_cursor": 1e999}',
])
def test_a_body_the_paging_read_cannot_vouch_for_is_parsed_whole(text):
    """None sends the page to the full parse, which names what is wrong."""
    assert envelope(text) is None


def test_a_duplicated_paging_field_reads_as_the_full_parse_reads_it():
    text = b'{"data": [], "next_cursor": "first", "next_cursor": "last"}'
    assert envelope(text) == (b"[]", orjson.loads(text)["next_cursor"], None)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_page_that_does_not_parse_is_never_spooled_and_nothing_after_it_lands(workers, tmp_path, monkeypatch):
    """A value the paging read skims over (1e400) fails the full parse later, in this process or
    a worker: the walk stops at that page, keeps none of it, and a rerun once the API is mended
    fetches it again and ends exact."""
    import sources.makini.walk as walk

    broken = {"on": True, "url": None, "answers": 0}
    checked = walk.raise_for_makini_error

    def corrupting(response, *args, **kwargs):
        if "/work-orders" in response.url and broken["on"]:
            if broken["url"] is None and "cursor=" in response.url:
                broken["url"] = response.url if broken["answers"] == 1 else None  # the walk's third page
                broken["answers"] += 1
            if response.url == broken["url"]:
                response._content = response.content.replace(b'"data":[{', b'"data":[{"zz":1e400,', 1)
        return checked(response, *args, **kwargs)

    monkeypatch.setattr(walk, "raise_for_makini_error", corrupting)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    sizes = {"purchase-orders": 10, "work-orders": 1500, "assets": 10, "inventory-items": 10, "vendors": 10}
    db = tmp_path / "w.duckdb"
    with Sandbox(seed=84, sizes=sizes, connections=1, shapes="drift_int64", in_process=True) as sandbox, \
            PageWorkers(workers) as pool:
        assert not workers or pool.wait_ready(120), "the worker did not start"
        for attempt in range(2):
            failed = sync(db, sandbox, entities=["work_orders"], rows_per_load=1, page_workers=pool)
            assert not failed.ok and "not JSON" in str(failed.report.failures[0]), failed.report.failures
            with duckdb.connect(str(db), read_only=True) as con:  # the two pages before it, nothing after
                assert con.execute("SELECT count(*) FROM makini.work_orders").fetchone()[0] == 500
        broken["on"] = False
        mended = sync(db, sandbox, entities=["work_orders"], rows_per_load=1, page_workers=pool)
        assert mended.ok, mended.report.failures
        assert_exact(db, sandbox, entities=["work_orders"])


@pytest.mark.parametrize("documents", [False, True])  # SQL tables; MongoDB's documents
def test_a_worker_prepares_what_the_converter_makes_of_a_drifting_page(documents):
    from sources.makini.page_workers import PreparedPage
    from sources.makini.records import PageConverter
    from sources.makini.settings import ENTITIES

    orders = [{"id": f"po_{i}", "updated_at": f"2026-03-0{1 + i % 3}T00:00:00.000Z", "priority": [2, "P2", None][i % 3],
               "erp_doc_id": 2**70 + i, "vendor": {"id": i, "name": "é✓"} if i % 2 else None,
               "custom_fields": {"a": None, "b": [1, 2.5]} if i % 2 else None,
               "line_items": [{"line_number": n, "quantity": [12, "12.5", 3.25][n % 3]} for n in range(i % 4)]}
              for i in range(40)]
    entity = ENTITIES["purchase_orders"]
    with PageWorkers(1) as workers:
        assert workers.wait_ready(120), "the worker did not start"
        page = workers.submit(BodyPage(exact_json.dumps(orders), "req_w"), entity, "conn_w", documents).result()
    assert isinstance(page, PreparedPage)
    in_worker = PageConverter(entity, "conn_w", documents=documents).land(page.prepared, "req_w")
    here = PageConverter(entity, "conn_w", documents=documents).convert(orders, "req_w")
    assert {name: table.to_pylist() for name, table in in_worker.items()} == \
        {name: table.to_pylist() for name, table in here.items()}
    assert {name: table.schema for name, table in in_worker.items()} == {name: table.schema for name, table in here.items()}


def test_what_a_worker_imports_loads_no_dlt():
    """A spawned worker imports the module of what it is sent (``page_workers._prepare``, the
    entity and the prepared tables) and its parent's main module (``python -m pipelines.sync``, the
    webhook processor's polling runs, the ``makini-sync`` command); none of them may pull in dlt, whose import is tens of megabytes per worker."""
    import subprocess
    import sys

    probe = ("import sys, pipelines.sync, pipelines.webhooks, pipelines.cli, sources.makini.page_workers, "
             "sources.makini.records, "
             "sources.makini.settings; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'dlt', 'duckdb'}))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert found.stdout.strip() == "[]", found.stdout + found.stderr
