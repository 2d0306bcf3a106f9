"""Shared fixtures. The sandbox ones: a session-wide sandbox over loopback and
helpers that put it back the way they found it."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, settings

# Property and fuzz tests: a fixed seed and a bounded number of examples in CI
# (the default); `pytest --hypothesis-profile=long` runs many more.
settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("ci")

from makini_sandbox import Sandbox, SandboxControl
from tests.mongo_server import mongo_server

# Small, but above every page-size cap that tests check (500 POs, 100 vendors).
SANDBOX_SIZES = {"purchase-orders": 600, "work-orders": 260, "assets": 80, "inventory-items": 120, "vendors": 130}


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """A running sandbox (seed 7, three connections; the third omits total_count)."""
    with Sandbox(seed=7, sizes=SANDBOX_SIZES, connections=3, in_process=True,
                 rate_limit_per_minute=100_000) as sb:
        yield sb


@pytest.fixture
def control(sandbox: Sandbox) -> Iterator[SandboxControl]:
    """The control client; afterwards faults are cleared, the rate limit restored and
    every connection made active again, so one test's switches never leak into another."""
    yield sandbox.control
    sandbox.control.clear_faults()
    sandbox.control.set_rate_limit(sandbox.rate_limit_per_minute)
    for conn in sandbox.connections:
        sandbox.control.set_connection_status(conn["id"], "active")


@pytest.fixture
def api_client(sandbox: Sandbox) -> Iterator[Callable[..., httpx.Client]]:
    """Factory: api_client(i) -> httpx client authenticated as connection i (token=... to override)."""
    clients: list[httpx.Client] = []

    def make(i: int = 0, token: str | None = None) -> httpx.Client:
        headers = {} if token == "" else {"Authorization": f"Bearer {token or sandbox.tokens[i]}"}
        client = httpx.Client(base_url=sandbox.base_url + "/api/v1", headers=headers, timeout=10)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# The sync tests' fixtures: their own dlt data dir, and a fresh small sandbox.
SMALL = {"purchase-orders": 1200, "work-orders": 300, "assets": 600, "inventory-items": 550, "vendors": 250}


@pytest.fixture
def isolated_dlt(tmp_path, monkeypatch):
    """Each test gets its own dlt data dir (pipeline state) and working dir."""
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def fresh_sandbox(isolated_dlt):
    from makini_sandbox import Sandbox

    with Sandbox(seed=11, sizes=SMALL, connections=2, in_process=True) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """URI (no database path) of the session's MongoDB-compatible server (tests/mongo_server.py)."""
    with mongo_server() as uri:
        yield uri
