"""Per-connection, per-minute rate limit with Retry-After and X-RateLimit headers."""
from __future__ import annotations

from datetime import datetime


def start_fresh_window(control) -> None:
    """Advance the sandbox clock to the start of a minute, so a window boundary
    cannot fall in the middle of the test."""
    now = datetime.fromisoformat(control.advance_clock(0)["now"])
    control.advance_clock(60 - now.second - now.microsecond / 1e6 + 0.001)


def test_limit_per_connection_per_minute(sandbox, control, api_client):
    control.set_rate_limit(5)
    start_fresh_window(control)
    first, second = api_client(0), api_client(1)
    remaining = []
    for _ in range(5):
        resp = first.get("/vendors", params={"limit": 1})
        assert resp.status_code == 200
        assert resp.headers["X-RateLimit-Limit"] == "5"
        remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]

    refused = first.get("/vendors", params={"limit": 1})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert refused.json()["error"]["request_id"] == refused.headers["X-Request-Id"]
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    retry_after = int(refused.headers["Retry-After"])
    assert 55 <= retry_after <= 60
    assert refused.headers["X-RateLimit-Reset"] == refused.headers["Retry-After"], "the same window end"

    assert second.get("/vendors").status_code == 200, "another connection has its own budget"
    assert first.get("/connection").status_code == 429, "every endpoint counts"

    control.advance_clock(retry_after)
    assert first.get("/vendors").status_code == 200, "the budget comes back after Retry-After"


def test_refused_requests_are_counted_by_status(sandbox, control, api_client):
    control.set_rate_limit(2)
    start_fresh_window(control)
    control.requests_served(reset=True)
    client = api_client(1)
    statuses = [client.get("/assets").status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    served = control.requests_served()
    assert served["by_status"] == {"200": 2, "429": 2}
    assert served["by_connection"] == {sandbox.connections[1]["id"]: {"assets": 4}}
