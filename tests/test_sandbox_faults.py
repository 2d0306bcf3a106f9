"""Seeded fault injection: reproducible, switchable, never on the control API."""
from __future__ import annotations

import time

import httpx
import pytest

FAULTS = dict(rate_429=0.15, rate_500=0.1, rate_503=0.1, drop_rate=0.1)


def statuses(sandbox, n: int = 60) -> list[str]:
    """Status of each of n list requests; "dropped" when the socket closed without a response."""
    out = []
    with httpx.Client(base_url=sandbox.base_url + "/api/v1", timeout=5,
                      headers={"Authorization": f"Bearer {sandbox.tokens[0]}"}) as client:
        for _ in range(n):
            try:
                out.append(str(client.get("/vendors", params={"limit": 1}).status_code))
            except httpx.RemoteProtocolError:
                out.append("dropped")
    return out


def test_same_seed_same_faults_other_seed_other_faults(sandbox, control):
    control.set_faults(seed=11, **FAULTS)
    first = statuses(sandbox)
    control.set_faults(seed=11, **FAULTS)
    again = statuses(sandbox)
    control.set_faults(seed=12, **FAULTS)
    other = statuses(sandbox)
    assert first == again
    assert first != other
    assert set(first) == {"200", "429", "500", "503", "dropped"}, first


def test_faults_use_the_error_envelope(sandbox, control, api_client):
    control.set_faults(seed=3, rate_429=0.5, rate_500=0.25, rate_503=0.25, retry_after=7)
    client = api_client(0)
    seen = {}
    for _ in range(30):
        resp = client.get("/purchase-orders")
        body = resp.json()["error"]
        assert body["request_id"] == resp.headers["X-Request-Id"]
        seen[resp.status_code] = (body["code"], resp.headers.get("Retry-After"))
    assert seen == {429: ("RATE_LIMIT_EXCEEDED", "7"), 500: ("INTERNAL_ERROR", None),
                    503: ("SYSTEM_UNAVAILABLE", None)}


def test_dropped_connection_closes_without_response(control, api_client):
    control.set_faults(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        api_client(0).get("/vendors")


def test_cut_body_stops_halfway_and_closes(control, api_client):
    control.set_faults(cut_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError, match="(?i)incomplete|closed|peer"):
        api_client(0).get("/purchase-orders")
    control.clear_faults()
    assert api_client(0).get("/purchase-orders").status_code == 200  # the next connection is served whole


def test_slow_responses_wait_then_answer(control, api_client):
    control.set_faults(slow_rate=1.0, slow_seconds=0.3)
    t = time.perf_counter()
    resp = api_client(0).get("/vendors", params={"limit": 1})
    assert resp.status_code == 200 and time.perf_counter() - t >= 0.3


def test_control_api_is_never_faulted_and_clearing_restores_service(sandbox, control, api_client):
    control.set_faults(rate_500=1.0)
    for _ in range(5):
        control.truth(sandbox.connections[0]["id"], "vendors")  # would raise on a 500
    assert api_client(0).get("/vendors").status_code == 500
    control.clear_faults()
    assert all(api_client(0).get("/vendors").status_code == 200 for _ in range(5))


def test_fault_rates_are_validated(control):
    from makini_sandbox import SandboxControlError

    with pytest.raises(SandboxControlError, match="INVALID_PARAMETER"):
        control.set_faults(rate_429=0.7, rate_500=0.7)
