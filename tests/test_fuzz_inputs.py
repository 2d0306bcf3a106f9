"""Hostile input, fuzzed with hypothesis (fixed seed, bounded examples; `--hypothesis-profile=long` for more).

Every input ends in a clear rejection or a safe load: never a crash, a hang or
a corrupted table; customer-chosen custom-field keys never reach SQL as identifiers.
"""

import json
import time

import duckdb
import orjson
import requests
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from makini_sync.integrity.deltas import Upsert, load_deltas
from makini_sync.destinations.profiles import load_profile
from makini_sync.webhooks.inbox import Inbox
from makini_sync.webhooks.receiver import create_app
from sources.makini.client import MakiniClient
from sources.makini.errors import MakiniError
from sources.makini.records import PageConverter
from sources.makini.settings import ENTITIES
from tests.webhook_support import new_secret, signed_headers

SECRET = new_secret()
PO = ENTITIES["purchase_orders"]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                      st.floats(allow_nan=False), st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                          max_leaves=30)
hostile_keys = st.sampled_from(['"; DROP TABLE makini.purchase_orders; --', "id", "ID", "Id ", "updated_at",
                                "a b", "a__b", "a.b", "", "x" * 300, "ünïcødé", "select", "`", "'", "\\", "\x00"])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    inbox = Inbox(tmp_path_factory.mktemp("fuzz") / "inbox.sqlite")
    with TestClient(create_app([SECRET], inbox)) as test_client:
        yield test_client, inbox


@given(headers=st.dictionaries(st.text(min_size=1, max_size=30).filter(lambda k: k.isascii() and k.isprintable()),
                               st.text(max_size=60).filter(lambda v: v.isascii() and v.isprintable()), max_size=6),
       body=st.binary(max_size=2000))
def test_receiver_rejects_arbitrary_unsigned_requests_cleanly(client, headers, body):
    test_client, inbox = client
    before = inbox.counts()
    response = test_client.post("/webhooks/makini", content=body, headers=headers)
    assert response.status_code in (400, 401, 413)
    assert inbox.counts()["pending"] == before["pending"]


@given(body=st.one_of(st.binary(max_size=3000), json_value.map(orjson.dumps),
                      st.just(b"[" * 5000 + b"]" * 5000), st.just(b'{"type": 1e999999}'),
                      st.just(b"\xff\xfe{\"type\": \"record.updated\"}")))
def test_receiver_handles_any_signed_body(client, body):
    test_client, inbox = client
    webhook_id = f"evt_{abs(hash(body))}_{time.monotonic_ns()}"
    try:
        headers = signed_headers([SECRET], webhook_id, body)
    except UnicodeDecodeError:
        headers = signed_headers([SECRET], webhook_id, b"{}")  # a signature over other bytes
    response = test_client.post("/webhooks/makini", content=body, headers=headers)
    assert response.status_code in (200, 400, 401, 413)
    if response.status_code == 200:
        event = orjson.loads(body)
        assert isinstance(event, dict) and isinstance(event.get("type"), str)


records = st.lists(st.dictionaries(st.one_of(hostile_keys, st.text(max_size=10)), json_value, max_size=6), max_size=5)


@given(records=records, custom=st.dictionaries(hostile_keys, json_value, max_size=4))
def test_source_parsing_rejects_or_converts_any_page(records, custom):
    page = [dict(r, id=f"r{i}", updated_at="2026-03-01T00:00:00.000Z", custom_fields=custom)
            if i % 2 == 0 else r for i, r in enumerate(records)]
    body = json.dumps({"data": page, "next_cursor": None}).encode()  # big integers included
    response = requests.Response()
    response.status_code, response._content = 200, body
    response.headers["X-Request-Id"] = "req_fuzz"
    converter = PageConverter(PO, "conn_fuzz")
    try:
        (page,) = MakiniClient("http://127.0.0.1:1", "t").extract_response(response, "data")
        if page.arrow:
            tables = converter.convert_arrow(page.records, "req_fuzz")
        else:
            tables = converter.convert(page.records, "req_fuzz")
    except MakiniError as exc:
        assert "req_fuzz" in str(exc)  # a clear rejection, with the request id
        return
    parent = tables["purchase_orders"]
    assert set(parent.column_names) >= {"connection_id", "id", "updated_at"} or parent.num_rows == 0
    if "custom_fields" in parent.column_names:
        assert pa.types.is_string(parent.schema.field("custom_fields").type)  # keys never become columns


@settings(max_examples=8)
@given(custom=st.dictionaries(hostile_keys, json_value, min_size=1, max_size=4),
       extra=st.dictionaries(st.sampled_from(["a b", "a__b", "Status", "STATUS", "select", "ünïcødé"]),
                             st.text(max_size=10), max_size=3))
def test_hostile_records_load_safely_into_duckdb(tmp_path_factory, custom, extra):
    tmp = tmp_path_factory.mktemp("load")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLT_DATA_DIR", str(tmp / "dlt"))
        profile = load_profile("duckdb").with_settings(credentials=str(tmp / "f.duckdb"))
        record = {"id": "po_1", "updated_at": "2026-03-01T00:00:00.000Z", "status": "draft",
                  "custom_fields": custom, **extra, "line_items": [{"line_number": 1, "quantity": 1.0}]}
        try:
            load_deltas(profile, [Upsert("conn_f", PO, record)])
        except Exception as exc:  # noqa: BLE001 - a clear rejection is acceptable, a crash of the test is not
            assert "purchase_orders" in str(exc) or "collision" in str(exc).lower() or "normaliz" in str(exc).lower(), exc
            return
    with duckdb.connect(str(tmp / "f.duckdb"), read_only=True) as db:
        (stored,) = db.execute("SELECT custom_fields FROM makini.purchase_orders").fetchone()
        tables = {r[0] for r in db.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert orjson.loads(stored) == orjson.loads(orjson.dumps(custom, option=orjson.OPT_NON_STR_KEYS))
    assert "purchase_orders" in tables  # nothing dropped
