"""Pages whose fields drift in type are read column-wise (sources/makini/lifted_read.py): the
tables are the ones parsing the whole page gives, and a field the plan does not know is
never skipped."""

import pyarrow as pa
import pytest

from makini_sandbox import Sandbox
from sources.makini import exact_json, lifted_read
from sources.makini.client import PageSchemas
from tests.sync_support import assert_exact, sync
from tests.test_page_workers import changes, tables

SIZES = {"purchase-orders": 1500, "work-orders": 300, "assets": 300, "inventory-items": 300, "vendors": 100}
PATH = "/api/v1/purchase-orders"
CHILDREN = frozenset({"line_items"})
KEYS = frozenset({"id", "updated_at", "deleted_at"})


@pytest.mark.parametrize("shape", ["drift", "drift_int64", "chaos", "nulls"])
def test_drifting_pages_land_as_parsed_whole(shape, tmp_path, monkeypatch):
    with Sandbox(seed=97, sizes=SIZES, connections=1, shapes=shape, in_process=True) as sandbox:
        monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "lifted"))
        lifted = sync(tmp_path / "lifted.duckdb", sandbox, conversion_processes=0)
        with monkeypatch.context() as patched:
            patched.setattr(lifted_read, "learn", lambda *args, **kwargs: None)
            patched.setenv("DLT_DATA_DIR", str(tmp_path / "whole"))
            whole = sync(tmp_path / "whole.duckdb", sandbox, conversion_processes=0)
        assert lifted.ok and whole.ok
        lifted_pages = sum(n for path, n in lifted.report.paths.items() if "+lift" in path)
        assert lifted_pages >= 1, lifted.report.paths
        assert not any("+lift" in path for path in whole.report.paths), whole.report.paths
        assert tables(tmp_path / "lifted.duckdb") == tables(tmp_path / "whole.duckdb")
        assert changes(lifted) == changes(whole)
        assert_exact(tmp_path / "lifted.duckdb", sandbox)


def body(records: list, cursor=None) -> bytes:
    return exact_json.dumps({"data": records, "next_cursor": cursor, "total_count": len(records)})


def order(number, **extra) -> dict:
    return {"id": f"po_{number}", "updated_at": "2026-01-01T00:00:00Z", "order_number": number,
            "ship_to": {"city": "Oslo"}, "line_items": [{"line_number": 1, "quantity": 2}], **extra}


def records_of(table: pa.Table) -> list[dict]:
    return table["data"][0].as_py()


def lifted(schemas: PageSchemas, content: bytes) -> pa.Table:
    table = schemas.read_lifted(PATH, content)
    assert table is not None
    return table


@pytest.fixture
def schemas() -> PageSchemas:
    page_schemas = PageSchemas()
    page_schemas.child_fields[PATH] = CHILDREN
    page_schemas.key_fields[PATH] = KEYS
    return page_schemas


def test_drifting_fields_come_as_the_text_sent(schemas):
    first = [order(1), order("PO-2"), order(3, line_items=[{"line_number": 1, "quantity": "2.50"}])]
    rows = records_of(lifted(schemas, body(first, "c1")))
    assert [r["order_number"] for r in rows] == [b"1", b'"PO-2"', b"3"]
    assert [r["line_items"][0]["quantity"] for r in rows] == [b"2", b"2", b'"2.50"']
    assert rows[0]["ship_to"] == {"city": "Oslo"}


@pytest.mark.parametrize("later, field_of, sent", [
    ([order(3, incoterms="FOB"), order("PO-4")], lambda row: row["incoterms"], "FOB"),
    ([order(3, ship_to={"city": "Oslo", "zip": "0150"}), order("PO-4")], lambda row: row["ship_to"]["zip"], "0150"),
    ([order(3, line_items=[{"line_number": 1, "quantity": 2, "discount_pct": 10}]), order("PO-4")],
     lambda row: row["line_items"][0]["discount_pct"], 10),
], ids=["record", "nested_object", "line_item"])
def test_a_field_new_on_a_later_page_is_kept(schemas, later, field_of, sent):
    lifted(schemas, body([order(1), order("PO-2")], "c1"))
    rows = records_of(lifted(schemas, body(later)))  # fits the plan but for the new field
    assert field_of(rows[0]) == sent


def test_a_field_null_on_the_first_page_keeps_its_later_values(schemas):
    lifted(schemas, body([order(1, delivery_date=None), order("PO-2", delivery_date=None)], "c1"))
    rows = records_of(lifted(schemas, body([order(3, delivery_date="2026-02-01"), order("PO-4")])))
    assert [r["delivery_date"] for r in rows] == ["2026-02-01", None]


def test_a_field_that_starts_to_drift_later_is_lifted_then(schemas):
    lifted(schemas, body([order(1, priority=1), order("PO-2", priority=2)], "c1"))
    rows = records_of(lifted(schemas, body([order(3, priority="high"), order("PO-4", priority=3)])))
    assert [r["priority"] for r in rows] == [b'"high"', b"3"]


def test_a_key_that_drifts_is_not_read_lifted(schemas):
    drifting_key = [order(1, id=17), order("PO-2")]
    assert schemas.read_lifted(PATH, body(drifting_key)) is None


def test_integers_beyond_64_bits_are_lifted_exact(schemas):
    content = body([order(1, erp_doc_id=2**70 + 1), order("PO-2", erp_doc_id=5)])
    rows = records_of(lifted(schemas, content))
    assert [r["erp_doc_id"] for r in rows] == [str(2**70 + 1).encode(), b"5"]
    assert lifted_read.raw_values(pa.array([r["erp_doc_id"] for r in rows], lifted_read.RAW_TYPE)) == [2**70 + 1, 5]


def test_free_form_json_sent_as_text_stays_that_text(schemas):
    content = body([order(1, custom_fields={"a": 1}), order("PO-2", custom_fields="plain text"),
                    order(3, custom_fields=None)])
    rows = records_of(lifted(schemas, content))
    assert [r["custom_fields"] for r in rows] == ['{"a":1}', "plain text", None]


def test_a_page_nested_deeper_than_msgspec_reads_is_left_to_the_whole_parse(schemas):
    deep = 1010  # within orjson's depth, beyond msgspec's
    content = body([order(1, note="[" * deep + "]" * deep), order("PO-2")]).replace(
        b'"' + b"[" * deep + b"]" * deep + b'"', b"[" * deep + b"]" * deep)
    assert schemas.read_lifted(PATH, content) is None  # orjson parses it, or names what is wrong


def test_a_lifted_value_that_is_not_utf8_is_left_to_the_whole_parse(schemas):
    content = body([order(1, note=5), order("PO-2", note="xyz")]).replace(b'"xyz"', b'"\xff\xfe"')
    assert schemas.read_lifted(PATH, content) is None  # the whole parse refuses it, naming the request


def test_a_path_the_walk_did_not_name_is_never_read_lifted():
    # a document store's walk gives no key fields: its records are kept as sent, not as Arrow types them
    schemas = PageSchemas()
    schemas.child_fields[PATH] = CHILDREN
    assert schemas.read_lifted(PATH, body([order(1), order("PO-2")])) is None


def test_a_document_store_gets_drifting_pages_parsed_whole(tmp_path, monkeypatch, mongo_uri):
    """Documents keep the records as sent; Arrow's typing of the stable fields would change
    them (an integer among floats inside an object stored as 60.0), so no page is read lifted."""
    from tests.test_value_fidelity import MongoWarehouse

    learned = []
    learn = lifted_read.learn
    monkeypatch.setattr(lifted_read, "learn", lambda *args: learned.append(args[0]) or learn(*args))
    warehouse = MongoWarehouse(tmp_path, monkeypatch, mongo_uri)
    monkeypatch.chdir(tmp_path)
    try:
        sizes = {"purchase-orders": 500, "work-orders": 100, "assets": 100, "inventory-items": 100, "vendors": 100}
        with Sandbox(seed=97, sizes=sizes, connections=1, shapes="drift_int64", in_process=True) as sandbox:
            warehouse.fresh()
            result = warehouse.sync(sandbox)
        assert result.ok, result.report.failures
        assert sum(result.report.records.values()) == 900
        assert not learned, f"{len(learned)} page(s) read lifted for a document store"
    finally:
        warehouse.close()
