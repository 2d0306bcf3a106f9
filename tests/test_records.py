"""Page conversion: nested objects, arrays and custom fields, on the row path and the Arrow path."""

import orjson
import pytest
import requests

from sources.makini.client import ArrowPage, MakiniClient
from sources.makini.records import PageConverter, _flat_row
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
    parsed = MakiniClient("http://127.0.0.1:1", "t").extract_response(response, "data")
    if len(parsed) == 1 and isinstance(parsed[0], ArrowPage):
        tables = converter.convert_arrow(parsed[0].records)
    else:
        tables = converter.convert(parsed)
    stored = tables["purchase_orders"]["custom_fields"].to_pylist()
    assert stored == [None if v is None else orjson.dumps(v).decode() for v in values]
