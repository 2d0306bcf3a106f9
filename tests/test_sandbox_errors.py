"""Every error code of the contract, in the error envelope, with a matching X-Request-Id."""
from __future__ import annotations

import base64

import pytest


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["message"]
    assert err["request_id"] == resp.headers["X-Request-Id"]
    assert resp.headers["X-Request-Id"].startswith("req_")
    return err


def test_every_response_has_a_unique_request_id(api_client):
    client = api_client(0)
    ids = [client.get("/vendors", params={"limit": 1}).headers["X-Request-Id"] for _ in range(20)]
    assert len(set(ids)) == 20


@pytest.mark.parametrize("token", ["", "mk_live_00000000000000000000000000000000", "not a token"])
def test_missing_or_wrong_token_is_unauthorized(api_client, token):
    assert_error(api_client(token=token).get("/purchase-orders"), 401, "UNAUTHORIZED")


def test_reauthorization_required_until_reconnected(sandbox, control, api_client):
    conn, client = sandbox.connections[1]["id"], api_client(1)
    control.set_connection_status(conn, "reauthorization_required")
    assert_error(client.get("/purchase-orders"), 401, "REAUTHORIZATION_REQUIRED")
    assert client.get("/connection").json()["status"] == "reauthorization_required"
    assert client.get("/sync-status").json()["status"] == "failed"
    assert api_client(0).get("/purchase-orders").status_code == 200, "other connections are unaffected"
    control.set_connection_status(conn, "active")
    assert client.get("/purchase-orders").status_code == 200


def test_offline_connection_is_unavailable_until_cleared(sandbox, control, api_client):
    conn, client = sandbox.connections[0]["id"], api_client(0)
    control.set_connection_status(conn, "offline")
    for _ in range(3):
        assert_error(client.get("/work-orders"), 503, "SYSTEM_UNAVAILABLE")
    assert client.get("/connection").json() == {"id": conn, "system": "SAP", "status": "offline"}
    control.set_connection_status(conn, "active")
    assert client.get("/work-orders").status_code == 200


def _next_cursor(client, entity: str = "vendors") -> str:
    return client.get(f"/{entity}", params={"limit": 3}).json()["next_cursor"]


def test_forged_or_foreign_cursors_are_invalid(api_client):
    client = api_client(0)
    cursor = _next_cursor(client)
    payload, sig = cursor.split(".")
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    tampered = base64.urlsafe_b64encode(decoded.replace(b",3,", b",99,")).rstrip(b"=").decode()
    assert tampered != payload
    for bad in (f"{tampered}.{sig}", cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB"), "garbage", "", "a.b.c"):
        assert_error(client.get("/vendors", params={"cursor": bad}), 400, "INVALID_CURSOR")
    assert_error(client.get("/assets", params={"cursor": cursor}), 400, "INVALID_CURSOR")
    assert_error(api_client(1).get("/vendors", params={"cursor": cursor}), 400, "INVALID_CURSOR")
    assert client.get("/vendors", params={"cursor": cursor}).status_code == 200, "the genuine one still works"


def test_cursor_expires_after_24_hours(control, api_client):
    client = api_client(0)
    cursor = _next_cursor(client)
    control.advance_clock(23 * 3600)
    assert client.get("/vendors", params={"cursor": cursor}).status_code == 200, "valid for at least 24 h"
    control.advance_clock(3600 + 1)
    err = assert_error(client.get("/vendors", params={"cursor": cursor}), 400, "INVALID_CURSOR")
    assert "expired" in err["message"]


@pytest.mark.parametrize("params", [{"limit": "abc"}, {"limit": "0"}, {"limit": "-5"}, {"limit": "2.5"},
                                    {"limit": ""}, {"modified_after": "yesterday"},
                                    {"modified_after": "2026-13-01T00:00:00Z"}])
def test_bad_parameters_are_invalid(api_client, params):
    err = assert_error(api_client(0).get("/purchase-orders", params=params), 400, "INVALID_PARAMETER")
    assert next(iter(params)) in err["message"]


@pytest.mark.parametrize("path", ["/purchase_orders", "/invoices", "/purchase-orders/extra"])
def test_unknown_paths_are_not_found(api_client, path):
    assert_error(api_client(0).get(path), 404, "NOT_FOUND")


def test_rate_limited_request_carries_retry_after(sandbox, control, api_client):
    control.set_rate_limit(1)
    client = api_client(2)
    # Three requests, so one lands on a spent budget even if a minute boundary passes in between.
    err_resp = next(r for r in (client.get("/connection") for _ in range(3)) if r.status_code != 200)
    assert_error(err_resp, 429, "RATE_LIMIT_EXCEEDED")
    assert 1 <= int(err_resp.headers["Retry-After"]) <= 60
