"""Page conversion: nested objects, arrays and custom fields, on the row path and the Arrow path."""

import orjson
import pyarrow as pa
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
