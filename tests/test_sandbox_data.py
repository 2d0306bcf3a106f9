"""Seed data is realistic and covers Makini's sandbox scenarios."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

from makini_sandbox import ENTITIES

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture(scope="module")
def everything(sandbox):
    """All records of every entity for connections 0 and 1, fetched once."""
    import httpx

    out = {}
    for i in (0, 1):
        with httpx.Client(base_url=sandbox.base_url + "/api/v1",
                          headers={"Authorization": f"Bearer {sandbox.tokens[i]}"}) as client:
            for entity in ENTITIES:
                rows, query = [], {"limit": 500}
                while True:
                    body = client.get(f"/{entity}", params=query).json()
                    rows += body["data"]
                    if not body["next_cursor"]:
                        break
                    query = {"cursor": body["next_cursor"]}
                out[i, entity] = rows
    return out


def test_public_names_and_connections(sandbox):
    assert ENTITIES == ("purchase-orders", "work-orders", "assets", "inventory-items", "vendors")
    assert sandbox.base_url.startswith("http://127.0.0.1:")
    assert [c["token"] for c in sandbox.connections] == sandbox.tokens
    for conn in sandbox.connections:
        assert re.fullmatch(r"conn_[0-9a-f]{8}", conn["id"])
        assert re.fullmatch(r"mk_live_[0-9a-f]{32}", conn["token"])
    assert len({c["system"] for c in sandbox.connections}) == 3


def test_common_fields(everything):
    for (i, entity), rows in everything.items():
        assert rows, entity
        assert len({r["id"] for r in rows}) == len(rows)
        for r in rows[:50]:
            assert TIMESTAMP.match(r["created_at"]) and TIMESTAMP.match(r["updated_at"])
            assert r["created_at"] <= r["updated_at"] or r["deleted_at"]
            assert isinstance(r["custom_fields"], dict)


def test_custom_fields_differ_between_connections(everything):
    keys = [set(everything[i, "purchase-orders"][0]["custom_fields"]) for i in (0, 1)]
    assert keys[0] != keys[1]


def test_purchase_orders_cover_the_sandbox_scenarios(everything):
    pos = everything[0, "purchase-orders"]
    vendor_ids = {v["id"] for v in everything[0, "vendors"]}
    assert {p["status"] for p in pos} >= {"draft", "approved", "sent", "partially_received", "received",
                                          "cancelled"}
    assert any(p["vendor_id"] not in vendor_ids for p in pos), "an invalid vendor reference"
    assert sum(p["vendor_id"] in vendor_ids for p in pos) > 0.9 * len(pos)
    assert any(ln["stock_status"] == "out_of_stock" for p in pos for ln in p["line_items"])
    assert any(p["deleted_at"] for p in pos), "some soft-deleted records"
    for p in pos:
        assert 1 <= len(p["line_items"]) <= 8
        assert Decimal(p["total_amount"]) == sum(Decimal(ln["amount"]) for ln in p["line_items"])
        assert set(p["ship_to"]) == {"line1", "city", "postal_code", "country"}
        for ln in p["line_items"]:
            assert {"line_number", "material_code", "description", "quantity", "unit_of_measure",
                    "unit_price", "delivery_date"} <= set(ln)
            Decimal(ln["unit_price"])


def test_references_between_entities(everything):
    # Connection 1's assets: no other test hard-deletes them, so the hierarchy is intact.
    assets = {a["id"]: a for a in everything[1, "assets"]}
    assert any(a["parent_id"] is None for a in assets.values())
    assert any(a["parent_id"] in assets for a in assets.values()), "an asset hierarchy"
    assert all(a["parent_id"] is None or a["parent_id"] in assets for a in assets.values())
    assets = {a["id"]: a for a in everything[0, "assets"]}
    wos = everything[0, "work-orders"]
    assert sum(w["asset_id"] in assets for w in wos) > 0.8 * len(wos)
    inventory = everything[0, "inventory-items"]
    assert any(i["quantity_on_hand"] == 0 for i in inventory)
    assert len({i["location"] for i in inventory}) > 1
