"""A value whose type differs from its column's lands in a variant column, and the change is recorded.

The sandbox's shapes and tests/test_value_fidelity.py check every value end to
end; these pin the rules themselves: which values fit a column, which go to
``<column>__v_<type>``, that Arrow's reader never turns a string into a
timestamp, that the webhook processor lands values as the sync does, and that
the changes are recorded, logged once and counted.
"""

import datetime as dt
import logging

import duckdb
import orjson
import pyarrow as pa
import requests

from makini_sandbox import Sandbox
from makini_sync.integrity.deltas import Upsert, load_deltas
from makini_sync.run.summary import render_summary
from sources.makini import exact_json
from sources.makini.client import MakiniClient
from sources.makini.column_kinds import ColumnKinds
from sources.makini.records import PageConverter
from sources.makini.settings import ENTITIES
from tests.sync_support import duckdb_profile, sync

BASE = {"created_at": "2026-03-01T00:00:00.000Z", "updated_at": "2026-03-01T00:00:00.000Z", "deleted_at": None}


def pages(*records_per_page, entity="work_orders"):
    """Each page through the client (as the API would serve it) and the converter, sharing kinds."""
    client, kinds = MakiniClient("http://127.0.0.1:1", "t"), ColumnKinds()
    converter = PageConverter(ENTITIES[entity], "conn_1", kinds=kinds)
    out = []
    for number, records in enumerate(records_per_page):
        response = requests.Response()
        response.status_code = 200
        response._content = exact_json.dumps({"data": [dict(BASE, **r) for r in records], "next_cursor": None})
        (page,) = client.extract_response(response, "data")
        convert = converter.convert_arrow if page.arrow else converter.convert
        out.append(convert(page.records, f"req_{number}")[ENTITIES[entity].table].to_pylist())
    return out, kinds


def test_values_that_do_not_fit_their_column_land_in_variants():
    (first, second), kinds = pages(
        [{"id": "a", "scheduled_start": "2024-02-28", "priority": 1, "qty": 3, "label": "x"}],
        [{"id": "b", "scheduled_start": "2024-02-28T15:31:43.949Z", "priority": "P2", "qty": 2.5, "label": 7},
         {"id": "c", "scheduled_start": "2024-02-29", "priority": "12.5", "qty": 4.0, "label": True}],
    )
    assert first[0]["scheduled_start"] == dt.date(2024, 2, 28) and first[0]["priority"] == 1
    b, c = second
    assert b["scheduled_start"] is None
    assert b["scheduled_start__v_timestamp"] == dt.datetime(2024, 2, 28, 15, 31, 43, 949000, tzinfo=dt.timezone.utc)
    assert (b["priority"], b["priority__v_text"], c["priority__v_text"]) == (None, "P2", "12.5")  # strings stay strings
    assert (b["qty"], b["qty__v_double"], c["qty"]) == (None, 2.5, 4)  # 4.0 is the integer 4, exactly
    assert (b["label__v_bigint"], c["label__v_bool"]) == (7, True)
    assert c["scheduled_start"] == dt.date(2024, 2, 29) and c["scheduled_start__v_timestamp"] is None
    changes = {(c.column_name, c.request_id) for c in kinds.take_changes()}
    assert ("scheduled_start__v_timestamp", "req_1") in changes and ("priority__v_text", "req_1") in changes
    assert not any(column == "priority" for column, _ in changes)  # the first page's columns are no change


def test_a_column_of_nulls_fits_any_kind():
    """Text nulls only (a page whose dated rows reconcile skipped) add no variant."""
    from sources.makini.column_kinds import fit

    for target in ("timestamp", "date", "bigint", "double", "bool"):
        fitting, rest = fit(pa.array([None] * 5, pa.string()), target)
        assert rest is None and fitting.null_count == 5, target
    fitting, rest = fit(pa.array([None, "P2"], pa.string()), "bigint")
    assert rest.to_pylist() == [None, "P2"]


def test_strings_that_look_like_timestamps_stay_strings():
    """Arrow's JSON reader would read these as timestamps (midnight, or with no zone)."""
    (rows,), _ = pages([{"id": "a", "note": "2024-02-28", "at": "2024-02-28 15:31:43"},
                        {"id": "b", "note": "2024-03-01", "at": "2024-03-01 00:00:00"}])
    assert [(r["note"], r["at"]) for r in rows] == [("2024-02-28", "2024-02-28 15:31:43"),
                                                    ("2024-03-01", "2024-03-01 00:00:00")]


def test_integers_beyond_64_bits_and_custom_fields_with_nulls_land_exactly():
    big = 2**70 + 1
    (rows,), _ = pages([{"id": "a", "ref": 5, "custom_fields": {"a": None, "b": [{"x": None}], "c": big}},
                        {"id": "b", "ref": big, "custom_fields": {"d": "2024-01-01"}}])
    assert rows[0]["ref"] == 5 and int(rows[1]["ref__v_decimal"]) == big
    assert orjson.loads(rows[1]["custom_fields"]) == {"d": "2024-01-01"}
    assert rows[0]["custom_fields"] == '{"a":null,"b":[{"x":null}],"c":%d}' % big


def test_custom_fields_with_nulls_stay_on_the_arrow_path():
    client = MakiniClient("http://127.0.0.1:1", "t")
    response = requests.Response()
    response.status_code = 200
    response._content = orjson.dumps({"data": [dict(BASE, id=str(i), custom_fields={"a": None if i % 2 else i})
                                               for i in range(20)], "next_cursor": None})
    (page,) = client.extract_response(response, "data")
    assert page.arrow and page.path == "arrow+orjson"
    assert page.records["custom_fields"].to_pylist()[:2] == ['{"a":0}', '{"a":null}']


def test_the_processor_lands_values_as_the_sync_does_and_changes_are_recorded(isolated_dlt, caplog):
    db = isolated_dlt / "w.duckdb"
    with Sandbox(seed=3, sizes={"purchase-orders": 5, "work-orders": 5, "assets": 5, "inventory-items": 5,
                                "vendors": 30}, connections=1, in_process=True) as sandbox:
        first = sync(db, sandbox, entities=["vendors"])
        assert first.ok and not first.report.schema_changes
        connection_id = sandbox.connections[0]["id"]
        record = sandbox.control.records(connection_id, "vendors")[0]
        # a webhook's record with a number where the sync's column holds text, through the
        # processor's own pipeline (its schema has never seen the column)
        changed = dict(record, vendor_number=12345, updated_at="2030-01-01T00:00:00.000Z")
        load_deltas(duckdb_profile(db), [Upsert(connection_id, ENTITIES["vendors"], changed)])
        with duckdb.connect(str(db), read_only=True) as con:
            row = con.execute("SELECT vendor_number, vendor_number__v_bigint FROM makini.vendors WHERE id = ?",
                              [record["id"]]).fetchone()
        assert row == (None, 12345)
        # the sync sees a new field and a new type on the next run: recorded, one WARNING line, counted
        sandbox.control.put_records(connection_id, "vendors", [
            dict(record, id="vnd_new1", rating=4.5, vendor_number=True, updated_at="2030-01-02T00:00:00.000Z")])
        caplog.set_level(logging.WARNING)
        second = sync(db, sandbox, entities=["vendors"])
        assert second.ok
        warnings = [r.getMessage() for r in caplog.records if "schema changed" in r.getMessage()]
        assert len(warnings) == 1 and "vendors.rating (new column)" in warnings[0], warnings
        assert "schema changes: 2" in render_summary(second)
        with duckdb.connect(str(db), read_only=True) as con:
            recorded = con.execute("SELECT connection_id, table_name, column_name, kind, request_id IS NOT NULL "
                                   "FROM makini._makini_schema_changes ORDER BY column_name").fetchall()
        assert recorded == [(connection_id, "vendors", "rating", "double", True),
                            (connection_id, "vendors", "vendor_number__v_bigint", "bigint", False),  # the webhook's
                            (connection_id, "vendors", "vendor_number__v_bool", "bool", True)]
