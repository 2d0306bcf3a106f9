"""Deployment shapes (makini_sandbox/shapes.py) as a client sees them over HTTP.

Each shape is served as described, deterministically from the seed; the
default serves exactly the unshaped bytes; cursors, `modified_after`,
mutate, truth and webhooks keep working for shaped connections; the
records control endpoints read and put exact records.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from makini_sandbox import Sandbox, SandboxControlError
from makini_sandbox.clock import parse_iso_ms
from makini_sandbox.shapes import LONG_TEXT_CHARS, ShapeRenderer, parse_shape, resolve_shapes
from tests.webhook_support import new_secret

SIZES = {"purchase-orders": 150, "work-orders": 120, "assets": 60, "inventory-items": 100, "vendors": 80}
SHAPES = ["default", "timestamps", "mixed_dates", "type_drift", "sparse", "nulls", "unicode", "v3+custom_entity"]
DEFAULT, TIMESTAMPS, MIXED, DRIFT, SPARSE, NULLS, UNICODE, V3 = range(len(SHAPES))
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture(scope="module")
def shaped():
    with Sandbox(seed=21, sizes=SIZES, connections=len(SHAPES), shapes=SHAPES, in_process=True,
                 rate_limit_per_minute=1_000_000) as sb:
        yield sb


def http(sb, i: int) -> httpx.Client:
    return httpx.Client(base_url=sb.base_url + "/api/v1", headers={"Authorization": f"Bearer {sb.tokens[i]}"},
                        timeout=30)


def walk(sb, i: int, entity: str, limit: int = 500, **params) -> tuple[list[dict], list[bytes]]:
    """Every record of one walk (parsed without loss) and the raw page bodies."""
    records, bodies, cursor = [], [], None
    with http(sb, i) as client:
        while True:
            q = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
            resp = client.get(f"/{entity}", params=q)
            assert resp.status_code == 200, resp.text[:300]
            bodies.append(resp.content)
            body = json.loads(resp.content)
            records.extend(body["data"])
            cursor = body["next_cursor"]
            if not cursor:
                return records, bodies


def values(records, field):
    return [r[field] for r in records if field in r]


# -- default and determinism --------------------------------------------------------
def test_default_shape_serves_exactly_the_unshaped_bytes(shaped):
    with Sandbox(seed=21, sizes=SIZES, connections=2, in_process=True) as plain, \
         Sandbox(seed=21, sizes=SIZES, connections=2, shapes="default", in_process=True) as named:
        assert plain.connections == named.connections
        assert plain.connections[0] == shaped.connections[0]  # other connections' shapes change nothing here
        assert "shape" not in plain.connections[0] and "shapes" not in plain.control.info()
        for entity in SIZES:
            ref = b"".join(walk(plain, 0, entity)[1])
            assert b"".join(walk(named, 0, entity)[1]) == ref
            assert b"".join(walk(shaped, DEFAULT, entity)[1]) == ref
        assert b"".join(walk(plain, 1, "vendors")[1]) == b"".join(walk(named, 1, "vendors")[1])


def test_same_seed_same_shapes_same_bytes():
    kw = dict(seed=5, sizes={"purchase-orders": 60, "vendors": 40}, connections=2, shapes=["v3_chaos", "chaos"],
              in_process=True)
    with Sandbox(**kw) as a, Sandbox(**kw) as b:
        assert a.control.info()["shapes"] == ["v3_chaos", "chaos"]
        for i in range(2):
            for entity in ("purchase-orders", "vendors", "work-orders", "maintenance-plans"):
                assert walk(a, i, entity)[1] == walk(b, i, entity)[1], (i, entity)


def test_shape_specs():
    assert parse_shape("v3+type_drift").traits == {"v3", "type_drift"}
    assert parse_shape("chaos").custom_entities == ("maintenance-plans",)
    assert [s.name for s in resolve_shapes("nulls", 3)] == ["nulls"] * 3
    with pytest.raises(ValueError, match="unknown shape"):
        parse_shape("v9")
    with pytest.raises(ValueError, match="one per connection"):
        Sandbox(connections=3, shapes=["default", "v3"])


# -- dates and timestamps -----------------------------------------------------------
def test_dates_timestamps_and_both_in_one_walk(shaped):
    for i, want in ((DEFAULT, {"date"}), (TIMESTAMPS, {"timestamp"}), (MIXED, {"date", "timestamp"})):
        wos = walk(shaped, i, "work-orders")[0]
        kinds = {"date" if DATE.match(v) else "timestamp" if TIMESTAMP.match(v) else v
                 for v in values(wos, "scheduled_start")}
        assert kinds == want, (SHAPES[i], kinds)
        pos = walk(shaped, i, "purchase-orders")[0]
        line_dates = {"date" if DATE.match(ln["delivery_date"]) else "timestamp"
                      for p in pos for ln in p["line_items"]}
        assert line_dates == want
    mixed = walk(shaped, MIXED, "work-orders")[0][:20]
    assert {bool(TIMESTAMP.match(w["scheduled_start"])) for w in mixed} == {True, False}, "mixed within one page"


# -- type drift ---------------------------------------------------------------------
def test_type_drift(shaped):
    wos = walk(shaped, DRIFT, "work-orders")[0]
    prio = values(wos, "priority")
    assert any(type(p) is int for p in prio) and any(isinstance(p, str) and re.fullmatch(r"P\d", p) for p in prio)
    assert any(p in ("low", "medium", "high", "urgent") for p in prio)
    desc = values(wos, "description")
    assert any(isinstance(d, dict) for d in desc) and any(d is False for d in desc) and any(isinstance(d, str) for d in desc)

    pos = walk(shaped, DRIFT, "purchase-orders")[0]
    qty = [ln["quantity"] for p in pos for ln in p["line_items"]]
    assert any(type(q) is int for q in qty) and any(type(q) is float for q in qty)
    assert any(isinstance(q, str) and re.fullmatch(r"\d+(\.\d+)?", q) for q in qty), "numbers as strings"
    half = len(pos) // 2  # integers in the older half turn into floats in the newer half
    counted_old = [ln["quantity"] for p in pos[:half // 2] for ln in p["line_items"] if ln["unit_of_measure"] == "EA"]
    counted_new = [ln["quantity"] for p in pos[-half // 2:] for ln in p["line_items"] if ln["unit_of_measure"] == "EA"]
    assert any(type(q) is int for q in counted_old)
    assert not any(type(q) is int for q in counted_new) and any(type(q) is float for q in counted_new)
    assert {type(p["total_amount"]) for p in pos} == {str, float}
    assert {type(p["order_number"]) for p in pos} == {str, int}
    big = [p["erp_doc_id"] for p in pos if p["erp_doc_id"] >= 2 ** 64]
    assert big and all(type(b) is int for b in big), "integers beyond 64 bits, exact in the JSON"

    inv = walk(shaped, DRIFT, "inventory-items")[0]
    q = values(inv, "quantity_on_hand")
    assert any(type(x) is int for x in q[:20]) and not any(type(x) is float for x in q[:20])
    assert any(type(x) is float for x in q[-20:]) and not any(type(x) is int for x in q[-20:])
    assert any(isinstance(x, str) for x in q)

    vendors = walk(shaped, DRIFT, "vendors")[0]
    terms = values(vendors, "payment_terms")
    assert any(isinstance(t, dict) and set(t) == {"code", "days"} for t in terms) and any(isinstance(t, str) for t in terms)
    assert {type(v["vendor_number"]) for v in vendors} == {str, int}
    assets = walk(shaped, DRIFT, "assets")[0]
    assert {type(a["location"]) for a in assets} == {str, dict}
    assert {type(a["serial_number"]) for a in assets} == {str, int}


# -- fields appearing and vanishing mid-walk ----------------------------------------
def test_fields_appear_and_vanish_mid_walk(shaped):
    vendors = walk(shaped, SPARSE, "vendors")[0]
    has_tax = ["tax_id" in v for v in vendors]
    has_fax = ["fax" in v for v in vendors]
    assert not has_tax[0] and has_tax[-1] and has_fax[0] and not has_fax[-1]
    first_tax = has_tax.index(True)
    assert all(has_tax[first_tax:]) and not any(has_tax[:first_tax]), "absent first, then present"
    assert 0 < first_tax < len(vendors) - 1
    pos = walk(shaped, SPARSE, "purchase-orders")[0]
    assert "incoterms" not in pos[0] and "incoterms" in pos[-1]
    assert "discount_pct" not in pos[0]["line_items"][0] and "discount_pct" in pos[-1]["line_items"][0]
    wos = walk(shaped, SPARSE, "work-orders")[0]
    assert "crew" in wos[0] and "crew" not in wos[-1] and "completed_at" in wos[-1]
    assert None in values(wos, "completed_at"), "present but null, too"


# -- nulls, null objects, objects turning into lists --------------------------------
def test_nulls_and_nested_shapes(shaped):
    pos = walk(shaped, NULLS, "purchase-orders")[0]
    assert any(p["ship_to"] is None for p in pos)
    assert any(isinstance(p["ship_to"], dict) and p["ship_to"]["city"] is None for p in pos)
    kinds = [type(p["bill_to"]) for p in pos]
    assert kinds[0] is dict and list in kinds, "a nested object turning into a list"
    assert all(isinstance(a, dict) for p in pos if isinstance(p["bill_to"], list) for a in p["bill_to"])
    cfs = [p["custom_fields"] for p in pos]
    assert any(None in cf.values() for cf in cfs)
    assert all(isinstance(cf["approval"], dict) and "comment" in cf["approval"] and cf["approval"]["comment"] is None
               for cf in cfs)
    hist = [h for cf in cfs for h in cf["history"]]
    assert hist and all(isinstance(h, dict) and h["notes"] is None for h in hist), "nested lists of objects"
    vendors = walk(shaped, NULLS, "vendors")[0]
    assert {type(v["contact"]) for v in vendors} == {dict, list}


# -- long hostile Unicode -----------------------------------------------------------
def test_long_unicode_strings(shaped):
    found = 0
    for entity, field in (("work-orders", "description"), ("vendors", "name"), ("inventory-items", "description")):
        records, bodies = walk(shaped, UNICODE, entity)
        longs = [r[field] for r in records if isinstance(r[field], str) and len(r[field]) == LONG_TEXT_CHARS]
        assert longs, entity
        for text in longs:
            for probe in ("\u0000", "😀", "漢字", "שלום", '"', "\\", "\n", "\t"):
                assert probe in text, (entity, probe)
        found += len(longs)
        assert all(b"\\u0000" in b for b in bodies if b"\\u0000" in b)  # NUL is escaped, the JSON is valid
    notes = [r["custom_fields"]["notes"] for r in walk(shaped, UNICODE, "purchase-orders")[0]
             if "notes" in r["custom_fields"]]
    assert notes and all(len(n) == LONG_TEXT_CHARS for n in notes)
    assert found >= 5


# -- v3 names -----------------------------------------------------------------------
def test_v3_names_order_cursor_and_modified_after(shaped):
    pos, _ = walk(shaped, V3, "purchase-orders", limit=7)
    assert len(pos) == SIZES["purchase-orders"]
    for p in pos:
        assert {"key", "updatedAt", "deletedAt", "lineItems", "orderNo", "created_at", "custom_fields"} <= set(p)
        assert not {"id", "updated_at", "deleted_at", "line_items", "order_number"} & set(p)
    order = [(p["updatedAt"], p["key"]) for p in pos]
    assert order == sorted(order) and len({p["key"] for p in pos}) == len(pos)
    since = pos[len(pos) // 2]["updatedAt"]
    later, _ = walk(shaped, V3, "purchase-orders", modified_after=since)
    assert [p["key"] for p in later] == [p["key"] for p in pos if p["updatedAt"] >= since]
    truth = shaped.control.truth(shaped.connections[V3]["id"], "purchase-orders", detail=True)
    assert truth["records"] == {p["key"]: {"updated_at": p["updatedAt"], "deleted_at": p["deletedAt"],
                                           "line_count": len(p["lineItems"])} for p in pos}


def test_mutate_keeps_the_v3_shape(shaped):
    conn = shaped.connections[V3]["id"]
    before, _ = walk(shaped, V3, "work-orders")
    changed = shaped.control.mutate(conn, "work-orders", update=0.1, insert=2, soft_delete=0.05, hard_delete=0.05,
                                    seed=4)
    after, _ = walk(shaped, V3, "work-orders")
    by_key = {w["key"]: w for w in after}
    assert set(changed["hard_deleted"]).isdisjoint(by_key)
    newest = max(w["updatedAt"] for w in before)
    for rid in changed["updated"] + changed["inserted"] + changed["soft_deleted"]:
        rec = by_key[rid]
        assert {"key", "updatedAt", "deletedAt"} <= set(rec) and "id" not in rec and "updated_at" not in rec
        assert rec["updatedAt"] > newest
    assert all(by_key[rid]["deletedAt"] == by_key[rid]["updatedAt"] for rid in changed["soft_deleted"])
    truth = shaped.control.truth(conn, "work-orders", detail=True)["records"]
    assert {k: v["updated_at"] for k, v in truth.items()} == {w["key"]: w["updatedAt"] for w in after}
    # the changes are at the end of the walk: a client resuming from its bookmark sees them
    tail, _ = walk(shaped, V3, "work-orders", modified_after=by_key[changed["updated"][0]]["updatedAt"])
    assert set(changed["updated"] + changed["inserted"] + changed["soft_deleted"]) <= {w["key"] for w in tail}


def test_mutate_keeps_value_shapes(shaped):
    conn = shaped.connections[SPARSE]["id"]
    changed = shaped.control.mutate(conn, "vendors", update=0.5, seed=2)
    vendors = {v["id"]: v for v in walk(shaped, SPARSE, "vendors")[0]}
    for rid in changed["updated"]:  # a new version is in the newer half: the field that appears is there
        assert "tax_id" in vendors[rid] and "fax" not in vendors[rid]


# -- the custom entity --------------------------------------------------------------
def test_custom_entity_is_served_where_configured(shaped):
    plans, _ = walk(shaped, V3, "maintenance-plans", limit=9)
    assert len(plans) == 40
    for p in plans:
        assert {"key", "created_at", "updatedAt", "deletedAt", "custom_fields", "tasks", "plan_number"} <= set(p)
        assert p["tasks"] and all(isinstance(t["task_number"], int) for t in p["tasks"])
    assert shaped.connections[V3]["entities"][-1] == "maintenance-plans"
    with http(shaped, DEFAULT) as client:
        resp = client.get("/maintenance-plans")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "NOT_FOUND"
    conn = shaped.connections[V3]["id"]
    changed = shaped.control.mutate(conn, "maintenance-plans", update=0.1, insert=1, seed=3)
    truth = shaped.control.truth(conn, "maintenance-plans", detail=True)
    assert truth["count"] == 41 and set(changed["updated"] + changed["inserted"]) <= set(truth["records"])
    with pytest.raises(SandboxControlError, match="404"):
        shaped.control.truth(shaped.connections[DEFAULT]["id"], "maintenance-plans")


def test_custom_entity_size_and_subprocess_mode():
    with Sandbox(seed=3, sizes={"purchase-orders": 5, "maintenance-plans": 7}, connections=2,
                 shapes=["custom_entity", "default"]) as sb:  # a subprocess: python -m makini_sandbox
        assert len(walk(sb, 0, "maintenance-plans")[0]) == 7
        assert len(walk(sb, 0, "purchase-orders")[0]) == 5
        assert sb.connections[0]["shape"] == "custom_entity" and "shape" not in sb.connections[1]


# -- the records control endpoints --------------------------------------------------
def test_records_endpoint_reads_what_the_api_serves(shaped):
    for i, entity in ((DRIFT, "purchase-orders"), (V3, "purchase-orders"), (UNICODE, "work-orders")):
        served, _ = walk(shaped, i, entity)
        assert shaped.control.records(shaped.connections[i]["id"], entity) == served


def test_put_records_serves_them_exactly():
    weird = [
        {"id": "a\u0000\n😀", "created_at": "2024-01-01T00:00:00.000Z", "updated_at": "2024-01-02T00:00:00.000Z",
         "deleted_at": None, "custom_fields": {"big": 2 ** 70, "neg": -(2 ** 65), "nested": [{"x": None}], "": {}},
         "name": "x" * 10_000, "qty": 2.5, "flag": True, "when": "2024-02-28"},
        {"id": "plain", "created_at": "2024-01-01T00:00:00.000Z", "updated_at": "2024-01-01T00:00:00.000Z",
         "deleted_at": "2024-01-01T00:00:00.000Z", "custom_fields": {}, "name": None, "qty": "12.5"},
    ]
    with Sandbox(seed=1, sizes={e: 3 for e in SIZES}, connections=2, shapes=["default", "v3"], in_process=True) as sb:
        conn = sb.connections[0]["id"]
        out = sb.control.put_records(conn, "vendors", weird, replace=True)
        assert sorted(out["created"]) == sorted(r["id"] for r in weird) and len(out["removed"]) == 3
        assert out["count"] == 2
        served, bodies = walk(sb, 0, "vendors")
        assert served == [weird[1], weird[0]]  # list order: updated_at, then id
        assert served[0]["qty"] == "12.5" and type(served[1]["custom_fields"]["big"]) is int
        assert sb.control.records(conn, "vendors") == served
        assert sb.control.truth(conn, "vendors", detail=True)["records"]["plain"]["deleted_at"] == weird[1]["deleted_at"]
        # without replace: add one, replace one
        newer = dict(weird[1], updated_at="2024-03-01T00:00:00.000Z", qty=3)
        out = sb.control.put_records(conn, "vendors", [newer, dict(weird[1], id="third")])
        assert out["replaced"] == ["plain"] and out["created"] == ["third"] and out["count"] == 3
        assert walk(sb, 0, "vendors", modified_after="2024-02-01T00:00:00Z")[0] == [newer]
        # mutate on an injected record moves only its timestamps
        changed = sb.control.mutate(conn, "vendors", ids=["plain"], update=1.0)
        after = {r["id"]: r for r in sb.control.records(conn, "vendors")}
        assert changed["updated"] == ["plain"] and after["plain"]["updated_at"] > newer["updated_at"]
        assert {k: v for k, v in after["plain"].items() if k != "updated_at"} == \
            {k: v for k, v in newer.items() if k != "updated_at"}
        # a v3 connection takes records in its own names
        v3 = sb.connections[1]["id"]
        rec = {"key": "k1", "updatedAt": "2024-01-01T00:00:00.000Z", "deletedAt": None, "created_at": "2024-01-01T00:00:00.000Z",
               "custom_fields": {}, "lineItems": [{"line_number": 1}, {"line_number": 2}], "orderNo": 7}
        sb.control.put_records(v3, "purchase-orders", [rec], replace=True)
        assert walk(sb, 1, "purchase-orders")[0] == [rec]
        assert sb.control.truth(v3, "purchase-orders", detail=True)["records"]["k1"]["line_count"] == 2
        for bad, why in (([{"id": "x", "updated_at": "2024-01-01T00:00:00Z"}], "key"),
                         ([{"key": "x", "updatedAt": "yesterday"}], "ISO 8601"),
                         ([rec, rec], "repeat")):
            with pytest.raises(SandboxControlError, match=why):
                sb.control.put_records(v3, "purchase-orders", bad)
        assert walk(sb, 1, "purchase-orders")[0] == [rec], "a refused put changes nothing"
        with httpx.Client() as client:  # NaN is not JSON
            resp = client.post(sb.base_url + "/_sandbox/records", content=b'{"connection_id": "%s", "entity": "vendors",'
                               b' "records": [{"id": "n", "updated_at": "2024-01-01T00:00:00Z", "x": NaN}]}' % conn.encode())
        assert resp.status_code == 400


# -- webhooks keep the shape --------------------------------------------------------
class _Receiver(BaseHTTPRequestHandler):
    events: list = []

    def do_POST(self):  # noqa: N802
        self.events.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhooks_carry_the_shaped_record():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.events = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Sandbox(seed=2, sizes={e: 5 for e in SIZES}, connections=1, shapes="v3", in_process=True) as sb:
            conn = sb.connections[0]["id"]
            sb.control.configure_webhooks(f"http://127.0.0.1:{server.server_address[1]}/hook", [new_secret()],
                                          time_scale=0.001)
            changed = sb.control.mutate(conn, "purchase-orders", update=0.2, hard_delete=0.2, seed=1)
            sb.control.put_records(conn, "vendors", [{"key": "v-new", "updatedAt": "2024-01-01T00:00:00.000Z",
                                                      "deletedAt": None, "custom_fields": {}}])
            stats = sb.control.flush_webhooks(timeout=20)
            assert stats["pending"] == 0, stats
    finally:
        server.shutdown()
        server.server_close()
    records = {(e["type"], e["data"]["record"]["key"]): e["data"]["record"] for e in _Receiver.events}
    for rid in changed["updated"]:
        rec = records[("record.updated", rid)]
        assert "updatedAt" in rec and "lineItems" in rec and "id" not in rec
    for rid in changed["hard_deleted"]:
        assert set(records[("record.deleted", rid)]) == {"key", "updatedAt", "deletedAt"}
    assert ("record.created", "v-new") in records


def test_int64_keeps_drift_within_64_bits_and_changes_nothing_else():
    sizes = {"purchase-orders": 300, "work-orders": 5, "assets": 5, "inventory-items": 5, "vendors": 5}
    with Sandbox(seed=4, sizes=sizes, connections=1, in_process=True, rate_limit_per_minute=1_000_000) as sb:
        canonical, _ = walk(sb, 0, "purchase-orders")
    anchor = max(parse_iso_ms(r["updated_at"]) for r in canonical)
    wide = [ShapeRenderer(parse_shape("drift"), 4, 0, anchor)("purchase-orders", r) for r in canonical]
    narrow = [ShapeRenderer(parse_shape("drift_int64"), 4, 0, anchor)("purchase-orders", r) for r in canonical]

    def big(value):
        return isinstance(value, int) and not -(2 ** 63) <= value < 2 ** 63

    assert any(big(r["erp_doc_id"]) for r in wide) and any(big(r["custom_fields"].get("external_ref")) for r in wide)
    assert not any(big(r["erp_doc_id"]) or big(r["custom_fields"].get("external_ref")) for r in narrow)
    for a, b in zip(wide, narrow):
        assert big(a["erp_doc_id"]) == (a["erp_doc_id"] != b["erp_doc_id"])
        a_ref, b_ref = a["custom_fields"].pop("external_ref", None), b["custom_fields"].pop("external_ref", None)
        assert (a_ref is None) == (b_ref is None)
        a.pop("erp_doc_id"), b.pop("erp_doc_id")
        assert a == b  # the same draws: nothing else differs


def test_custom_nulls_changes_custom_fields_only():
    """``custom_nulls``: every record's custom fields hold 3-6 keys, at least one
    null, each key of one type; everything outside them is served as by default."""
    sizes = {"purchase-orders": 120, "work-orders": 60, "assets": 40, "inventory-items": 60, "vendors": 30}
    with Sandbox(seed=21, sizes=sizes, connections=1, in_process=True, rate_limit_per_minute=1_000_000) as plain, \
         Sandbox(seed=21, sizes=sizes, connections=1, shapes="custom_nulls", in_process=True,
                 rate_limit_per_minute=1_000_000) as shaped_:
        for entity in sizes:
            canonical, _ = walk(plain, 0, entity)
            served, _ = walk(shaped_, 0, entity)
            assert [r["id"] for r in served] == [r["id"] for r in canonical]
            kinds: dict[str, set] = {}
            lengths = set()
            for before, after in zip(canonical, served, strict=True):
                custom = after.pop("custom_fields")
                assert 3 <= len(custom) <= 6 and None in custom.values(), (entity, custom)
                lengths.add(len(custom))
                for key, value in custom.items():
                    if value is not None:
                        kinds.setdefault(key, set()).add(type(value))
                        if key in before["custom_fields"]:
                            assert value == before["custom_fields"][key]
                before.pop("custom_fields")
                assert after == before, "nothing outside custom_fields changes"
            assert all(len(types) == 1 for types in kinds.values()), kinds
            assert len(lengths) > 1, "records differ in how many custom fields they hold"
