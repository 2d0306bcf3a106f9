"""Free-form JSON fields that Arrow's reader cannot print back (a null inside
``custom_fields``) are stored as the JSON text every other path stores: the
API's value printed canonically (``records.json_text``), not its raw bytes,
whatever whitespace, escapes or number spelling the server used."""

import json

import orjson
import pytest
import requests

from sources.makini.client import PageSchemas, arrow_page
from sources.makini.errors import MalformedResponse
from sources.makini.records import json_text

# compact except where noted; each record's custom_fields holds a null, so Arrow cannot print it back
BODY = (
    b'{"data":['
    b'{"id":"a","updated_at":"2024-01-01T00:00:00.000Z","custom_fields":{"k": null, "n": 1.0E2}},'
    b'{"id":"b","updated_at":"2024-01-01T00:00:00.000Z","custom_fields":{"k":null,"s":"caf\\u00e9 \\/ \\"q\\""}},'
    b'{"id":"c","updated_at":"2024-01-01T00:00:00.000Z","custom_fields":null},'
    b'{"id":"d","updated_at":"2024-01-01T00:00:00.000Z"},'
    b'{"id":"e","updated_at":"2024-01-01T00:00:00.000Z","custom_fields":{"k":null,"big":9223372036854775807,'
    b'"nested":{"x":[1,2],"y":{"z":null}}}}'
    b'],"next_cursor":null}'
)


def _response(body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = body
    response.request = requests.Request("GET", "http://makini.test/api/v1/vendors").prepare()
    return response


def test_custom_fields_arrow_cannot_print_back_are_stored_as_canonical_text():
    page = arrow_page(_response(BODY), PageSchemas())
    assert page is not None and page.path == "arrow+orjson"
    sent = orjson.loads(BODY)["data"]
    expected = [None if r.get("custom_fields") is None else json_text(r["custom_fields"]) for r in sent]
    assert page.records["custom_fields"].to_pylist() == expected
    assert expected[0] == '{"k":null,"n":100.0}'  # not the raw '{"k": null, "n": 1.0E2}'
    assert expected[1] == '{"k":null,"s":"café / \\"q\\""}'


@pytest.mark.parametrize("spacing", [b" ", b"\n  "])
def test_whitespace_between_records_changes_nothing(spacing):
    spaced = BODY.replace(b"},{", b"}," + spacing + b"{")
    if b"\n" in spaced:  # Arrow's reader takes one JSON document per line: such a body goes to orjson
        assert arrow_page(_response(spaced), PageSchemas()) is None
        return
    page = arrow_page(_response(spaced), PageSchemas())
    assert page is not None
    assert page.records["custom_fields"].to_pylist() == arrow_page(_response(BODY), PageSchemas()).records[
        "custom_fields"].to_pylist()


def test_a_field_name_msgspec_refuses_is_read_from_the_whole_body():
    """A field name with quotes or backslashes cannot name a msgspec field: that page's
    JSON fields come from a parse of the whole body, with the same text."""
    name = '"; DROP TABLE makini.purchase_orders; --\\'
    page = [{"id": "a", "updated_at": "2024-01-01T00:00:00.000Z", name: [], "custom_fields": {"k": None}},
            {"id": "b", "updated_at": "2024-01-01T00:00:00.000Z", name: [], "custom_fields": {"k": 1}}]
    got = arrow_page(_response(json.dumps({"data": page, "next_cursor": None}).encode()), PageSchemas())
    assert got is not None and got.path == "arrow+orjson"
    assert got.records[name].to_pylist() == ["[]", "[]"]
    assert got.records["custom_fields"].to_pylist() == ['{"k":null}', '{"k":1}']


def test_bad_utf8_inside_a_lifted_field_is_refused_naming_the_request():
    """Arrow's reader lets invalid UTF-8 through and msgspec skips over it; the page is
    refused as malformed, as a parse of the whole body refuses it."""
    body = BODY.replace(b'"s":"caf\\u00e9', b'"s":"caf\xff')
    response = _response(body)
    response.headers["X-Request-Id"] = "req_utf8"
    with pytest.raises(MalformedResponse) as refused:
        arrow_page(response, PageSchemas())
    assert refused.value.request_id == "req_utf8"
