"""The sandbox serves a fleet: latency, per-connection rate-limit windows, exact
admission counts, hundreds of concurrent clients, a thousand connections.

Tests run against a sandbox subprocess over loopback (as the benchmarks do).
Timing checks compare with the configured latency where they can: a delayed
request takes at least the latency, an undelayed one (a control call) less than
it. The few fixed bounds sit far from both the working and the broken case (a
client that waits for a SYN retry waits a whole second; serial serving of the
burst would take two minutes; a thousand connections start in about 3 s).
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime

import pytest
import requests

from makini_sandbox import ENTITIES, Sandbox, SandboxControlError

TINY = {"purchase-orders": 3, "work-orders": 2, "assets": 2, "inventory-items": 2, "vendors": 2}
FLEET_SIZES = {"purchase-orders": 40, "work-orders": 20, "assets": 15, "inventory-items": 15, "vendors": 10}
N_CONNECTIONS = 50


@pytest.fixture(scope="module")
def fleet():
    with Sandbox(seed=5, sizes=TINY, connections=N_CONNECTIONS, rate_limit_per_minute=1_000_000) as sb:
        yield sb


@pytest.fixture
def ctl(fleet):
    """The fleet's control client; afterwards every setting is back to the start."""
    yield fleet.control
    fleet.control.clear_faults()
    fleet.control.set_rate_limit(fleet.rate_limit_per_minute)
    fleet.control.set_latency(0)


def session(sb: Sandbox, i: int | None) -> requests.Session:
    """A keep-alive session as connection i (None: a token no connection has)."""
    s = requests.Session()
    s.headers["Authorization"] = "Bearer " + (sb.tokens[i] if i is not None else "mk_live_" + "0" * 32)
    return s


def timed_get(s: requests.Session, url: str, **kwargs) -> tuple[requests.Response, float]:
    t0 = time.perf_counter()
    resp = s.get(url, timeout=30, **kwargs)
    return resp, time.perf_counter() - t0


def start_fresh_window(control, window_seconds: float) -> None:
    """Advance the sandbox clock just past the start of the next rate-limit window
    (windows are aligned to multiples of their length), so none turns mid-test."""
    now = datetime.fromisoformat(control.advance_clock(0)["now"].replace("Z", "+00:00")).timestamp()
    control.advance_clock(window_seconds - now % window_seconds + 0.001)


def rl(resp: requests.Response) -> tuple[str, str, int]:
    """(X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset) of a response."""
    return resp.headers["X-RateLimit-Limit"], resp.headers["X-RateLimit-Remaining"], \
        int(resp.headers["X-RateLimit-Reset"])


def test_latency_delays_every_api_response_but_no_control_call(fleet, ctl):
    latency = 0.25
    assert ctl.set_latency(latency * 1000) == {"latency_ms": 250.0, "connections": {}}
    api = fleet.base_url + "/api/v1/connection"
    resp, took = timed_get(session(fleet, 0), api)
    assert resp.status_code == 200 and took >= latency, took
    resp, took = timed_get(session(fleet, None), api)
    assert resp.status_code == 401 and took >= latency, ("unauthenticated answers are delayed too", took)

    t0 = time.perf_counter()
    ctl.info()
    ctl.truth(fleet.connections[0]["id"], "vendors")
    assert time.perf_counter() - t0 < latency, "control calls are never delayed"

    ctl.set_latency(0)
    assert timed_get(session(fleet, 0), api)[1] < latency


def test_a_connection_can_have_its_own_latency(fleet, ctl):
    latency = 0.3
    slow = fleet.connections[1]["id"]
    assert ctl.set_latency(latency * 1000, connection_id=slow) == {"latency_ms": 0.0,
                                                                 "connections": {slow: 300.0}}
    assert ctl.info()["latency"]["connections"] == {slow: 300.0}
    api = fleet.base_url + "/api/v1/vendors"
    assert timed_get(session(fleet, 1), api)[1] >= latency
    assert timed_get(session(fleet, 0), api)[1] < latency, "other connections keep the global latency"
    assert timed_get(session(fleet, 2), api)[1] < latency

    ctl.set_latency(0)  # the global setting drops every per-connection one
    assert timed_get(session(fleet, 1), api)[1] < latency
    with pytest.raises(SandboxControlError, match="NOT_FOUND"):
        ctl.set_latency(100, connection_id="conn_nosuch")
    with pytest.raises(SandboxControlError, match="INVALID_PARAMETER"):
        ctl.set_latency(-1)


def test_windows_of_n_per_w_seconds_per_connection(fleet, ctl):
    c1 = fleet.connections[1]["id"]
    ctl.set_rate_limit(3, window_seconds=10)
    limits = ctl.set_rate_limit(2, window_seconds=5, connection_id=c1)
    assert limits == {"per_window": 3, "window_seconds": 10.0, "connections": {c1: {"per_window": 2,
                                                                                    "window_seconds": 5.0}}}
    start_fresh_window(ctl, 10)
    first, second = session(fleet, 0), session(fleet, 1)
    vendors = fleet.base_url + "/api/v1/vendors"

    heads = [rl(first.get(vendors, params={"limit": 1})) for _ in range(3)]
    assert [h[:2] for h in heads] == [("3", "2"), ("3", "1"), ("3", "0")]
    assert all(9 <= reset <= 10 for _, _, reset in heads), heads
    refused = first.get(vendors)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert rl(refused)[:2] == ("3", "0")
    assert 9 <= int(refused.headers["Retry-After"]) == rl(refused)[2] <= 10

    # One connection's exhaustion never refuses another: every other one has its full budget.
    for i in range(2, N_CONNECTIONS):
        resp = session(fleet, i).get(fleet.base_url + "/api/v1/connection")
        assert resp.status_code == 200 and rl(resp)[:2] == ("3", "2"), (i, resp.status_code, resp.headers)

    assert [rl(second.get(vendors))[:2] for _ in range(2)] == [("2", "1"), ("2", "0")]
    refused = second.get(vendors)
    assert refused.status_code == 429
    assert 4 <= int(refused.headers["Retry-After"]) == rl(refused)[2] <= 5

    ctl.advance_clock(int(refused.headers["Retry-After"]))  # c1's 5 s window turns; c0's 10 s one does not
    assert rl(second.get(vendors))[:2] == ("2", "1")
    still = first.get(vendors)
    assert still.status_code == 429 and 4 <= int(still.headers["Retry-After"]) <= 5
    ctl.advance_clock(int(still.headers["Retry-After"]))
    back = first.get(vendors)
    assert back.status_code == 200 and rl(back)[:2] == ("3", "2")


def test_requests_served_counts_admitted_and_refused_exactly(fleet, ctl):
    c0, c1, c2 = (fleet.connections[i]["id"] for i in range(3))
    ctl.set_rate_limit(3, window_seconds=10)
    start_fresh_window(ctl, 10)
    ctl.requests_served(reset=True)
    api = fleet.base_url + "/api/v1"
    assert [session(fleet, 0).get(api + "/vendors").status_code for _ in range(5)] == [200, 200, 200, 429, 429]
    assert session(fleet, 1).get(api + "/no-such-entity").status_code == 404  # admitted: it used budget
    assert session(fleet, 1).get(api + "/connection").status_code == 200
    assert session(fleet, None).get(api + "/connection").status_code == 401
    ctl.set_faults(rate_500=1.0)
    injected = session(fleet, 2).get(api + "/vendors")
    ctl.clear_faults()
    assert injected.status_code == 500 and rl(injected)[:2] == ("3", "3"), "an injected fault uses no budget"

    served = ctl.requests_served()
    assert served["admission"] == {c0: {"admitted": 3, "refused": 2}, c1: {"admitted": 2, "refused": 0}}
    assert served["by_connection_status"] == {c0: {"200": 3, "429": 2}, c1: {"404": 1, "200": 1},
                                              "_unauthenticated": {"401": 1}, c2: {"500": 1}}
    assert served["by_connection"][c0] == {"vendors": 5}, "the older view is unchanged"
    assert served["total"] == 9 and served["by_status"] == {"200": 4, "429": 2, "404": 1, "401": 1, "500": 1}


async def _keepalive_client(host: str, port: int, token: str, requests_each: int) -> tuple[float, list[int]]:
    """One client on one keep-alive connection: (seconds to connect, the statuses it got)."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    connected = time.perf_counter() - t0
    statuses = []
    for _ in range(requests_each):
        writer.write(f"GET /api/v1/connection HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in head[1:] if line)
        await reader.readexactly(int(headers["Content-Length"]))
        assert headers.get("Connection") != "close"
        statuses.append(int(head[0].split()[1]))
    writer.close()
    await writer.wait_closed()
    return connected, statuses


async def _burst(base_url: str, tokens: list[str], clients: int, requests_each: int):
    host, port = base_url.removeprefix("http://").split(":")
    return await asyncio.gather(*(_keepalive_client(host, int(port), tokens[i % len(tokens)], requests_each)
                                  for i in range(clients)))


def test_hundreds_of_keepalive_clients_are_served_side_by_side(fleet, ctl):
    """300 clients connect at once (a backlog of 128 made most wait a second for a SYN
    retry), each sends 2 requests on its connection, each request delayed 200 ms: side by
    side that takes well under a second, one at a time it would take two minutes. With
    2 requests per connection per window, each of the 50 connections gets exactly 2 of
    its 12 requests admitted, however they interleave."""
    latency, clients, each = 0.2, 300, 2
    ctl.set_latency(latency * 1000)
    ctl.set_rate_limit(2, window_seconds=60)
    start_fresh_window(ctl, 60)
    ctl.requests_served(reset=True)
    t0 = time.perf_counter()
    results = asyncio.run(_burst(fleet.base_url, fleet.tokens, clients, each))
    wall = time.perf_counter() - t0

    assert each * latency <= wall < 3.0, wall
    slowest_connect = max(connected for connected, _ in results)
    assert slowest_connect < 0.7, f"a client waited {slowest_connect:.2f} s to connect (listen backlog full)"
    statuses = [s for _, got in results for s in got]
    assert len(statuses) == clients * each and statuses.count(200) == 2 * N_CONNECTIONS
    assert statuses.count(429) == clients * each - 2 * N_CONNECTIONS
    per_connection = clients * each // N_CONNECTIONS
    assert ctl.requests_served()["admission"] == {c["id"]: {"admitted": 2, "refused": per_connection - 2}
                                                  for c in fleet.connections}


def test_a_thousand_connections_start_quickly_and_each_is_served():
    """Start settings reach the server (subprocess, through the CLI); ids and tokens are
    unique; every connection answers as itself; one exhausted connection refuses no
    other; the list endpoints serve each connection's own data. The 30 s bound is a
    sanity check (it starts in about 3 s), not a benchmark."""
    t0 = time.perf_counter()
    with Sandbox(seed=9, sizes=FLEET_SIZES, connections=1000, rate_limit_per_minute=3, rate_window_seconds=30,
                 latency_ms=20) as sb:
        started = time.perf_counter() - t0
        assert started < 30, f"1000 connections took {started:.1f} s to start"
        ids, tokens = [c["id"] for c in sb.connections], sb.tokens
        assert len(set(ids)) == len(set(tokens)) == 1000
        info = sb.control.info()
        assert info["rate_limit"] == {"per_window": 3, "window_seconds": 30.0, "connections": {}}
        assert info["latency"] == {"latency_ms": 20.0, "connections": {}}
        start_fresh_window(sb.control, 30)
        sb.control.requests_served(reset=True)
        api = sb.base_url + "/api/v1"

        first = session(sb, 0)
        resp, took = timed_get(first, api + "/connection")
        assert took >= 0.02 and rl(resp)[:2] == ("3", "2")
        sb.control.set_latency(0)
        assert [first.get(api + "/connection").status_code for _ in range(3)] == [200, 200, 429]
        assert int(first.get(api + "/connection").headers["Retry-After"]) <= 30

        s = requests.Session()
        for i, (cid, token) in enumerate(zip(ids[1:], tokens[1:], strict=True), start=1):
            resp = s.get(api + "/connection", headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == 200 and resp.json()["id"] == cid, (i, resp.status_code)
        served = sb.control.requests_served()["admission"]
        assert served == {ids[0]: {"admitted": 3, "refused": 2},
                          **{cid: {"admitted": 1, "refused": 0} for cid in ids[1:]}}

        sb.control.set_rate_limit(1_000_000)
        seen_vendor_ids = set()
        for i in (1, 500, 999):
            client = session(sb, i)
            for entity in ENTITIES:
                size = FLEET_SIZES[entity]
                records = client.get(f"{api}/{entity}", params={"limit": 500}).json()["data"]
                assert len({r["id"] for r in records}) == len(records) == size, (i, entity, len(records))
                assert sb.control.truth(ids[i], entity)["count"] == size
            vendors = frozenset(r["id"] for r in client.get(f"{api}/vendors").json()["data"])
            assert vendors not in seen_vendor_ids, "each connection has its own data"
            seen_vendor_ids.add(vendors)


def test_connection_ids_stay_unique_when_their_hashes_collide():
    """Ids carry 32 bits of a hash of (seed, index): with seed 3438, connections 3 and
    296 draw the same one. The later connection gets another id; the others keep theirs."""
    empty = dict.fromkeys(ENTITIES, 0)
    with Sandbox(seed=3438, sizes=empty, connections=300, in_process=True) as sb:
        ids = [c["id"] for c in sb.connections]
        assert len(set(ids)) == len(set(sb.tokens)) == 300
        assert ids[3] == "conn_d18114b7" and ids[296] != ids[3]
        s = requests.Session()
        for i in (3, 296):
            resp = s.get(sb.base_url + "/api/v1/connection", headers={"Authorization": f"Bearer {sb.tokens[i]}"})
            assert resp.json()["id"] == ids[i]
            assert sb.control.truth(ids[i], "vendors")["count"] == 0
