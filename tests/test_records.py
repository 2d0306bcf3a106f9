"""Page conversion: nested objects, arrays and custom fields, on the row path and the Arrow path."""

import copy
import io

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from sources.makini.client import MakiniClient
from sources.makini.records import PageConverter, _flat_row, _json_column
from sources.makini.settings import ENTITIES


def test_nested_objects_flatten_arrays_and_custom_fields_become_json_text():
    record = {
        "id": "po_1",
        "ship_to": {"city": "Oslo", "geo": {"lat": 59.9, "tags": ["a", "b"]}, "empty": {}},
        "notes": [1, {"x": 2}],
        "custom_fields": {"Robert'); DROP TABLE x;--": 1},
        "line_items": [{"n": 1}],
    }
    assert _flat_row(record, frozenset({"line_items"})) == {
        "id": "po_1",
        "ship_to__city": "Oslo",
        "ship_to__geo__lat": 59.9,
        "ship_to__geo__tags": '["a","b"]',
        "notes": '[1,{"x":2}]',
        "custom_fields": '{"Robert\'); DROP TABLE x;--":1}',
    }
    assert _flat_row({"custom_fields": None, "ship_to": None}, frozenset()) == {"custom_fields": None, "ship_to": None}


CUSTOM_FIELD_PAGES = {
    "timestamp-looking text": [{"due": "2026-01-01T00:00:00Z"}, {"due": "2026-02-01T00:00:00Z"}],
    "a key some records lack": [{"a": "x", "b": "y"}, {"a": "z"}],
    "a key that is null": [{"a": "x", "b": None}, {"a": "z", "b": "w"}],
    "an integer among floats": [{"n": 1}, {"n": 2.5}],
    "no custom fields at all": [None, {"a": "x"}],
    "quotes, backslashes, accents and hostile keys": [{"a": 'say "hi" \\ bye', "Robert'); DROP TABLE x;--": "é✓/"}, {"a": "", "Robert'); DROP TABLE x;--": "\\"}],
    "plain text, integers and flags": [{"a": "x", "n": 7, "ok": True, "tags": ["p", "q"]}, {"a": "y", "n": 8, "ok": False, "tags": []}],
}


@pytest.mark.parametrize("case", CUSTOM_FIELD_PAGES)
def test_custom_fields_keep_the_json_the_api_sent(case):
    """Arrow's JSON reader types free-form objects (a timestamp-looking string
    becomes a timestamp, a missing key a null); custom fields must come out as
    the API wrote them, on whichever path the page takes."""
    values = CUSTOM_FIELD_PAGES[case]
    page = [{"id": f"po_{i}", "updated_at": "2026-03-01T00:00:00.000Z", "custom_fields": v} for i, v in enumerate(values)]
    response = requests.Response()
    response.status_code, response._content = 200, orjson.dumps({"data": page, "next_cursor": None})
    converter = PageConverter(ENTITIES["purchase_orders"], "conn_1")
    (page,) = MakiniClient("http://127.0.0.1:1", "t").extract_response(response, "data")
    tables = converter.convert_arrow(page.records) if page.arrow else converter.convert(page.records)
    stored = tables["purchase_orders"]["custom_fields"].to_pylist()
    assert stored == [None if v is None else orjson.dumps(v).decode() for v in values]


FLAT_VALUES = [st.text() | st.text(alphabet='ab"\\/\né\x00✓ '), st.integers(min_value=-2**63, max_value=2**63 - 1), st.booleans()]


@given(keys=st.lists(st.text(), min_size=0, max_size=4, unique=True), data=st.data())
def test_custom_fields_json_built_column_wise_equals_orjson(keys, data):
    """Flat objects become JSON text in Arrow; the text must be what orjson writes for each record
    (keys in the order Arrow's struct holds them: JSON objects are unordered)."""
    fields = {k: data.draw(st.sampled_from(FLAT_VALUES)) for k in keys}  # one type per key, as Arrow types them
    rows = data.draw(st.lists(st.one_of(st.none(), st.fixed_dictionaries(fields)), min_size=1, max_size=6))
    column = pa.chunked_array([pa.array(rows)])
    order = [field.name for field in column.type] if pa.types.is_struct(column.type) else []
    expected = [None if r is None else orjson.dumps({k: r[k] for k in order}).decode() for r in rows]
    assert _json_column(column).to_pylist() == expected


PO = ENTITIES["purchase_orders"]


def _order(rid: str, lines) -> dict:
    return {"id": rid, "updated_at": "2026-01-02T03:04:05.678Z", "status": "open", "line_items": lines}


def _by_row(records: list) -> dict:
    converter = PageConverter(PO, "c1")
    converter._validate(records, None)
    tables, splits = converter._convert_rows(records, None)
    return {n: converter._final_types(n, t, None, splits.get(n)) for n, t in tables.items()}


def _rows(table: pa.Table) -> list:
    return sorted(({k: v for k, v in r.items() if v is not None} for r in table.to_pylist()), key=repr)


# pages whose lines make Arrow refuse the page as a whole (a quantity that is a number
# on one line and text on the next), with a twist each in their line items
MIXED_LINES = [{"line_number": 10, "quantity": 2}, {"line_number": 20, "quantity": "2.5"}]
CHILD_PAGES = {
    "a key that mixes types": [_order("a", [{"line_number": 2, "sku": "x"}, {"line_number": "X", "sku": "y"}]),
                               _order("b", MIXED_LINES)],
    "a key beyond 64 bits": [_order("a", [{"line_number": 2**70, "quantity": 1}, {"line_number": 5, "quantity": "1"}])],
    "keys missing on some lines": [_order("a", [{"quantity": 1}, {"line_number": 7, "quantity": "3"}]),
                                   _order("b", [{"quantity": 2.5}])],
    "an empty object, a zero and an empty string for the lines": [
        _order("a", {}), _order("b", 0), _order("c", ""), _order("d", MIXED_LINES)],
    "a line field named like a column the child table adds": [
        _order("a", [{"line_number": 1, "purchase_order_id": "other", "quantity": 1}]), _order("b", MIXED_LINES)],
    "lines holding objects and custom fields": [
        _order("a", [{"line_number": 1, "dims": {"w": 1, "h": 2.5}, "custom_fields": {"k": None}, "quantity": 1}]),
        _order("b", MIXED_LINES)],
}


@pytest.mark.parametrize("case", CHILD_PAGES)
def test_lines_converted_apart_equal_the_row_path(case):
    expected = _by_row(copy.deepcopy(CHILD_PAGES[case]))
    converter = PageConverter(PO, "c1")
    got = converter.convert(copy.deepcopy(CHILD_PAGES[case]))
    assert converter.stayed_columnar, "the records should stay columnar"
    for name in expected:
        assert _rows(got[name]) == _rows(expected[name]), name
    lines = got.get("purchase_orders__line_items")
    if lines is not None and "line_number" in lines.column_names:
        keys = [(r["purchase_order_id"], r["line_number"]) for r in lines.to_pylist() if r["line_number"] is not None]
        assert len(keys) == len(set(keys)), "two lines share a key: the merge would keep one"


def test_a_page_whose_lines_are_all_empty_reports_no_row_path():
    converter = PageConverter(PO, "c1")
    converter.convert([_order("a", []), _order("b", []), {**_order("c", []), "status": 3}])
    assert converter.stayed_columnar and not converter.children_by_row


def test_arrays_inside_objects_keep_the_json_the_api_sent():
    vendors = ENTITIES["vendors"]
    page = [{"id": "a", "updated_at": "2024-01-01T00:00:00Z", "meta": {"l": [1, 2.5], "m": [{"a": 1}, {"b": 2}]}},
            {"id": "b", "updated_at": "2024-01-01T00:00:00Z", "meta": {"l": [3], "m": []}}]
    got = PageConverter(vendors, "c1").convert(copy.deepcopy(page))["vendors"]
    assert got.select(["meta__l", "meta__m"]).to_pylist() == [
        {"meta__l": "[1,2.5]", "meta__m": '[{"a":1},{"b":2}]'}, {"meta__l": "[3]", "meta__m": "[]"}]
    orders = [_order("a", [{"line_number": 1, "dims": {"l": [1, 2.5]}}]), _order("b", MIXED_LINES)]
    lines = PageConverter(PO, "c1").convert(copy.deepcopy(orders))["purchase_orders__line_items"]
    assert [r["dims__l"] for r in lines.to_pylist() if r["purchase_order_id"] == "a"] == ["[1,2.5]"]


ARROW_CHILD_PAGES = {
    "lines without their key": [_order("a", [{"quantity": 1}, {"line_number": 7, "quantity": 2}]),
                                _order("b", [{"quantity": 3}])],
    "custom fields inside a line": [_order("a", [{"line_number": 1, "custom_fields": {"k": None, "n": [1]}}])],
    "a line field named like an added column": [_order("a", [{"line_number": 1, "purchase_order_id": "x"}])],
    "a null line among lines": [_order("a", [{"line_number": 1}, None]), _order("b", [{"line_number": 2}])],
}


@pytest.mark.parametrize("case", ARROW_CHILD_PAGES)
def test_lines_read_by_arrow_equal_the_row_path(case):
    page = ARROW_CHILD_PAGES[case]
    body = orjson.dumps({"data": page, "next_cursor": None, "total_count": len(page)})
    # the page as Arrow's JSON reader types it (``client.arrow_page``)
    arrow = pa.Table.from_struct_array(pc.list_flatten(pa_json.read_json(io.BytesIO(body))["data"].combine_chunks()))
    converter = PageConverter(PO, "c1")
    try:
        expected = _by_row(copy.deepcopy(page))
    except Exception as exc:  # noqa: BLE001 - the row path refuses it: so must the Arrow path
        with pytest.raises(type(exc)):
            converter.convert_arrow(arrow)
        return
    got = converter.convert_arrow(arrow)
    for name in expected:
        assert _rows(got[name]) == _rows(expected[name]), name


def _arrow_read(page: list) -> pa.Table:
    """The page's records as Arrow's JSON reader types them (``client.arrow_page``)."""
    body = orjson.dumps({"data": page, "next_cursor": None, "total_count": len(page)})
    return pa.Table.from_struct_array(pc.list_flatten(pa_json.read_json(io.BytesIO(body))["data"].combine_chunks()))


def _bug(*args, **kwargs):
    raise TypeError("a bug inside the columnar path")


# each entry point with the inner functions it calls on the way to a columnar page
BUGGED = [("convert_arrow", "_flatten_structs"), ("convert_arrow", "_numbered"),
          ("convert", "_flatten_structs"), ("convert", "_numbered"), ("convert", "_objects_print_back"),
          ("convert", "_flag_among_floats")]


@pytest.mark.parametrize("entry, inner", BUGGED)
def test_a_type_error_from_a_bug_is_not_taken_for_a_refusal(monkeypatch, entry, inner):
    """Only a deliberate refusal (``_ColumnarRefused``) sends a page down the row
    path; a TypeError raised by a bug inside the columnar conversion reaches the
    caller rather than quietly making the page slower."""
    page = [_order("a", [{"line_number": 1, "quantity": 2}]), _order("b", [{"quantity": 3}])]
    records = _arrow_read(page) if entry == "convert_arrow" else copy.deepcopy(page)
    monkeypatch.setattr(f"sources.makini.records.{inner}", _bug)
    with pytest.raises(TypeError, match="a bug inside the columnar path"):
        getattr(PageConverter(PO, "c1"), entry)(records)


def test_a_deliberate_refusal_still_takes_the_row_path():
    """The checks that refuse the columnar path on purpose still steer: a flag
    where Arrow typed a float (it would read True as 1.0) sends the page row by
    row, where the flag lands in a variant column."""
    vendors = ENTITIES["vendors"]
    page = [{"id": "a", "updated_at": "2024-01-01T00:00:00Z", "meta": {"n": 1.5}},
            {"id": "b", "updated_at": "2024-01-01T00:00:00Z", "meta": {"n": True}}]
    converter = PageConverter(vendors, "c1")
    got = converter.convert(copy.deepcopy(page))["vendors"]
    assert not converter.stayed_columnar
    assert got.select(["meta__n", "meta__n__v_bool"]).to_pylist() == [
        {"meta__n": 1.5, "meta__n__v_bool": None}, {"meta__n": None, "meta__n__v_bool": True}]


LINE_ARRAY_PAGES = {
    "an integer array beside a float one": ([{"line_number": 1, "dims": [1, 2.5]}], [{"line_number": 1, "dims": [3]}],
                                           "dims", ["[1,2.5]", "[3]"]),
    "arrays inside an object": ([{"line_number": 1, "spec": {"l": [1, 2.5]}}], [{"line_number": 1, "spec": {"l": [3]}}],
                                "spec__l", ["[1,2.5]", "[3]"]),
    "objects that lack each other's keys": ([{"line_number": 1, "parts": [{"a": 1}]}],
                                            [{"line_number": 1, "parts": [{"b": 2}]}], "parts", ['[{"a":1}]', '[{"b":2}]']),
}


@pytest.mark.parametrize("case", LINE_ARRAY_PAGES)
def test_arrays_inside_line_items_keep_the_json_the_api_sent_on_every_path(case):
    """Arrow types an item field's arrays together across the page ([3] beside [1, 2.5]
    would come back as [3.0]); lines keep the JSON the API sent, whether the page is read
    by Arrow's reader or by orjson."""
    lines_a, lines_b, column, expected = LINE_ARRAY_PAGES[case]
    page = [_order("a", lines_a), _order("b", lines_b)]
    response = requests.Response()
    response.status_code, response._content = 200, orjson.dumps({"data": page, "next_cursor": None})
    response.request = requests.Request("GET", "http://127.0.0.1:1/api/v1/purchase-orders").prepare()
    client = MakiniClient("http://127.0.0.1:1", "t")
    client.page_schemas.child_fields["/api/v1/purchase-orders"] = frozenset({"line_items"})
    (read,) = client.extract_response(response, "data")
    converter = PageConverter(PO, "c1")
    via_client = converter.convert_arrow(read.records) if read.arrow else converter.convert(read.records)
    via_orjson = PageConverter(PO, "c1").convert(copy.deepcopy(page))
    for tables in (via_client, via_orjson):
        lines = tables["purchase_orders__line_items"]
        assert [r[column] for r in sorted(lines.to_pylist(), key=lambda r: r["purchase_order_id"])] == expected
