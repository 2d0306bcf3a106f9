"""The row path of page conversion: nested objects, arrays and custom fields."""

from sources.makini.records import _flat_row


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
