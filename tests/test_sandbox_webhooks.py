"""Sandbox webhook delivery over loopback: signatures, events per mutation,
retries with backoff, give-up, seeded duplicates/reordering/delays, lifecycle.

A tiny stdlib receiver records every request (arrival time, headers, body)
and can fail or stall its first N requests. Delivery times are scaled
(`time_scale`) so 30 s backoffs take milliseconds; `timeout` is set
explicitly where a scaled 10 s budget would be tighter than a loaded CI box.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from makini_sandbox import Sandbox, SandboxControlError


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


SECRETS = [new_secret(), new_secret()]  # a rotation: old and new secret both active


@dataclass
class Hit:
    at: float                 # time.monotonic() on arrival
    headers: dict[str, str]   # lower-cased names
    body: bytes
    status: int

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """Records requests; answers `fail_status` to the first `fail_first` of them and
    stalls the first `slow_first` for `slow_seconds` before answering (or, with `hold`
    set to an Event, until the test sets it)."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.fail_first, self.fail_status = 0, 500
        self.slow_first, self.slow_seconds = 0, 0.0
        self.hold: threading.Event | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    n = len(receiver.hits)
                    status = receiver.fail_status if n < receiver.fail_first else 200
                    receiver.hits.append(Hit(time.monotonic(), {k.lower(): v for k, v in self.headers.items()},
                                             body, status))
                    delay = receiver.slow_seconds if n < receiver.slow_first else 0.0
                    hold = receiver.hold if n < receiver.slow_first else None
                if hold is not None:
                    hold.wait(60)
                elif delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up waiting
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/makini"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, first_only: bool = True) -> list[dict]:
        """Bodies in arrival order; with first_only, each webhook-id once (its first arrival)."""
        seen: set[str] = set()
        out = []
        for hit in self.hits:
            if first_only and hit.headers["webhook-id"] in seen:
                continue
            seen.add(hit.headers["webhook-id"])
            out.append(hit.event)
        return out


@pytest.fixture(scope="module")
def sb():
    with Sandbox(seed=11, sizes={"purchase-orders": 150, "work-orders": 20, "assets": 20,
                                 "inventory-items": 20, "vendors": 30},
                 connections=2, in_process=True, rate_limit_per_minute=100_000) as sandbox:
        yield sandbox


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def hooks(sb, receiver):
    """hooks(**settings): point the sandbox's webhooks at this test's receiver.
    Afterwards webhooks are switched off, then statuses restored (emitting nothing)."""
    def configure(**settings):
        settings = {"time_scale": 0.001, "timeout": 2.0, "workers": 1} | settings
        return sb.control.configure_webhooks(receiver.url, SECRETS, **settings)

    yield configure
    sb.control.clear_webhooks()
    for conn in sb.connections:
        sb.control.set_connection_status(conn["id"], "active")


def conn_id(sb, i: int = 0) -> str:
    return sb.connections[i]["id"]


def listed(sb, entity: str, modified_after: str, i: int = 0) -> dict[str, dict]:
    """id -> record as the list endpoint returns it, for records changed at or after the time."""
    out: dict[str, dict] = {}
    params = {"modified_after": modified_after, "limit": 500}
    with httpx.Client(base_url=sb.base_url + "/api/v1", timeout=10, trust_env=False,
                      headers={"Authorization": f"Bearer {sb.tokens[i]}"}) as client:
        while True:
            page = client.get(f"/{entity}", params=params).raise_for_status().json()
            out.update((rec["id"], rec) for rec in page["data"])
            if not page["next_cursor"]:
                return out
            params = {"cursor": page["next_cursor"]}


# -- signatures -----------------------------------------------------------------------

def test_every_delivery_verifies_with_each_rotated_secret(sb, hooks, receiver):
    hooks()
    sb.control.mutate(conn_id(sb), "vendors", update=0.1, seed=1)
    sb.control.emit_event(conn_id(sb), "sync.completed", {"status": "completed"})
    # webhook-timestamp is the wall clock: an advanced sandbox clock must not make deliveries look stale
    sb.control.advance_clock(2 * 3600)
    sb.control.mutate(conn_id(sb), "vendors", insert=1)
    stats = sb.control.flush_webhooks(10)
    assert stats["pending"] == 0 and stats["delivered"] == stats["events"] == len(receiver.hits) >= 3
    for hit in receiver.hits:
        assert len(hit.headers["webhook-signature"].split(" ")) == 2
        assert all(part.startswith("v1,") for part in hit.headers["webhook-signature"].split(" "))
        for secret in SECRETS:
            assert Webhook(secret).verify(hit.body, hit.headers)["id"] == hit.headers["webhook-id"]
        assert abs(int(hit.headers["webhook-timestamp"]) - time.time()) < 30
        assert hit.headers["content-type"] == "application/json"
    # the check can fail: a stranger's secret, a tampered body, a missing header
    hit = receiver.hits[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(hit.body, hit.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRETS[0]).verify(hit.body.replace(b'"id"', b'"ID"', 1), hit.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRETS[0]).verify(hit.body, {k: v for k, v in hit.headers.items() if k != "webhook-timestamp"})
    created = datetime.fromisoformat(receiver.hits[-1].event["created_at"])
    assert (created - datetime.now(timezone.utc)).total_seconds() > 3600  # sandbox time in the body


# -- events per mutation --------------------------------------------------------------

def test_each_mutation_yields_its_event_with_the_record_as_listed(sb, hooks, receiver):
    hooks()
    cid = conn_id(sb)
    out = sb.control.mutate(cid, "purchase-orders", update=0.05, insert=2, soft_delete=0.03,
                            hard_delete=0.02, seed=3)
    stats = sb.control.flush_webhooks(10)
    events = receiver.events()
    expected = ([("record.deleted", r) for r in out["hard_deleted"]]
                + [("record.updated", r) for r in out["soft_deleted"]]
                + [("record.updated", r) for r in out["updated"]]
                + [("record.created", r) for r in out["inserted"]])
    assert [(e["type"], e["data"]["record"]["id"]) for e in events] == expected  # mutation order
    assert stats["events"] == stats["delivered"] == len(expected) and stats["by_type"]["record.deleted"] >= 1
    when = events[0]["created_at"]
    now_listed = listed(sb, "purchase-orders", when)
    hits = {h.headers["webhook-id"]: h for h in receiver.hits}
    for e in events:
        assert e["id"].startswith("evt_") and hits[e["id"]].event == e
        assert e["connection_id"] == cid and e["data"]["entity"] == "purchase-orders"
        assert e["created_at"] == when
        record = e["data"]["record"]
        if e["type"] == "record.deleted":
            assert record["id"] not in now_listed and record["updated_at"] == when
        else:
            assert record == now_listed[record["id"]]  # the full record, exactly as listed
            assert record["updated_at"] == when
            assert (record["deleted_at"] == when) == (record["id"] in out["soft_deleted"])
    assert set(now_listed) == {r for t, r in expected if t != "record.deleted"}


def test_successive_mutations_arrive_in_order_with_each_stored_version(sb, hooks, receiver):
    hooks()
    cid = conn_id(sb)
    rid = sb.control.mutate(cid, "work-orders", insert=1)["inserted"][0]
    for _ in range(3):
        sb.control.mutate(cid, "work-orders", ids=[rid], update=1.0)
    sb.control.mutate(cid, "work-orders", ids=[rid], hard_delete=1.0)
    sb.control.flush_webhooks(10)
    events = receiver.events()
    assert [e["type"] for e in events] == ["record.created"] + ["record.updated"] * 3 + ["record.deleted"]
    stamps = [e["data"]["record"]["updated_at"] for e in events]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    assert len({json.dumps(e["data"]["record"], sort_keys=True) for e in events[:4]}) == 4


# -- retries, timeouts, give-up -------------------------------------------------------

def scheduled_retries(caplog) -> list[tuple[int, float]]:
    """(attempt, seconds until the retry) as the sandbox scheduled them (its DEBUG log record
    "webhook %s attempt %d failed (%s); retry in %.3f s", read from the record's arguments)."""
    return [(r.args[1], r.args[3]) for r in caplog.records
            if r.name == "makini_sandbox.webhooks" and r.msg.startswith("webhook %s attempt %d failed")]


def test_failures_are_retried_with_doubling_backoff_and_the_same_webhook_id(sb, hooks, receiver, caplog):
    caplog.set_level(logging.DEBUG, logger="makini_sandbox.webhooks")
    receiver.fail_first, receiver.fail_status = 4, 500
    hooks(time_scale=0.001)  # first retry after 30 ms, then 60, 120, 240
    sb.control.emit_event(conn_id(sb), "sync.completed", {"status": "completed"})
    stats = sb.control.flush_webhooks(10)
    assert [h.status for h in receiver.hits] == [500] * 4 + [200]
    assert len({h.headers["webhook-id"] for h in receiver.hits}) == 1
    assert all(Webhook(SECRETS[1]).verify(h.body, h.headers) for h in receiver.hits)  # re-signed, still valid
    # the schedule as the sandbox computed it (its backoff, scaled), not as the wall clock saw it
    assert scheduled_retries(caplog) == [(1, 30 * 0.001), (2, 60 * 0.001), (3, 120 * 0.001), (4, 240 * 0.001)]
    # and no retry came early: a retry is due its delay after the failed answer, which came
    # after the failed request arrived (a lower bound only: how late it comes depends on the load)
    gaps = [b.at - a.at for a, b in zip(receiver.hits, receiver.hits[1:], strict=False)]
    assert all(gap >= delay for gap, (_, delay) in zip(gaps, scheduled_retries(caplog), strict=True)), gaps
    assert {k: stats[k] for k in ("events", "deliveries", "failed_attempts", "delivered", "given_up", "pending")} \
        == {"events": 1, "deliveries": 5, "failed_attempts": 4, "delivered": 1, "given_up": 0, "pending": 0}


def test_a_receiver_slower_than_the_timeout_counts_as_a_failure(sb, hooks, receiver, caplog):
    caplog.set_level(logging.DEBUG, logger="makini_sandbox.webhooks")
    receiver.slow_first, receiver.slow_seconds = 1, 0.5
    hooks(time_scale=0.01, timeout=None)  # timeout 10 s x 0.01 = 100 ms; retry after 300 ms
    sb.control.emit_event(conn_id(sb), "sync.completed", {"status": "completed"})
    stats = sb.control.flush_webhooks(10)
    assert len(receiver.hits) == 2 and receiver.hits[0].headers["webhook-id"] == receiver.hits[1].headers["webhook-id"]
    assert scheduled_retries(caplog) == [(1, 30 * 0.01)]
    timed_out = [r for r in caplog.records if r.name == "makini_sandbox.webhooks" and r.msg.startswith("webhook %s attempt")]
    assert "ReadTimeout" in timed_out[0].args[2] or "deadline" in timed_out[0].args[2], timed_out[0].args
    assert receiver.hits[1].at - receiver.hits[0].at >= 0.3  # never before the scheduled retry
    assert (stats["failed_attempts"], stats["delivered"], stats["pending"]) == (1, 1, 0)


def test_delivery_gives_up_after_the_scaled_horizon(sb, hooks, receiver):
    receiver.fail_first, receiver.fail_status = 10**6, 503
    scale = 0.00002  # horizon 24 h -> 1.728 s; retries after 0.6, 1.2, 2.4 ... ms
    hooks(time_scale=scale, timeout=1.0)
    sb.control.emit_event(conn_id(sb), "sync.failed", {"status": "failed", "error": "ERP timed out"})
    stats = sb.control.flush_webhooks(10)
    # attempt k starts ~0.6 ms * (2**(k-1) - 1) after the first: the 12th at ~1.23 s; a 13th would be past 1.728 s
    assert len(receiver.hits) == 12
    assert receiver.hits[-1].at - receiver.hits[0].at <= 86_400 * scale
    assert len({h.headers["webhook-id"] for h in receiver.hits}) == 1
    assert {k: stats[k] for k in ("deliveries", "failed_attempts", "delivered", "given_up", "pending")} \
        == {"deliveries": 12, "failed_attempts": 12, "delivered": 0, "given_up": 1, "pending": 0}
    time.sleep(0.2)
    assert len(receiver.hits) == 12  # nothing after giving up


# -- injection: duplicates, reordering, delays ----------------------------------------

def run_injected(sb, hooks, receiver, seed: int, ids: list[str]) -> tuple[list[str], list[str], dict]:
    receiver.hits.clear()
    hooks(seed=seed, duplicate_rate=0.25, reorder_window=8, time_scale=0.001)
    sb.control.mutate(conn_id(sb), "purchase-orders", ids=ids, update=1.0, seed=1)
    stats = sb.control.flush_webhooks(15)
    order = [e["data"]["record"]["id"] for e in receiver.events()]
    per_id = Counter(h.headers["webhook-id"] for h in receiver.hits)
    by_webhook = {h.headers["webhook-id"]: h.event["data"]["record"]["id"] for h in receiver.hits}
    duplicated = sorted(by_webhook[w] for w, n in per_id.items() if n > 1)
    assert all(n <= 2 for n in per_id.values())
    for hit in receiver.hits:  # copies are the same event, signed anew
        assert Webhook(SECRETS[0]).verify(hit.body, hit.headers)["id"] == hit.headers["webhook-id"]
    return order, duplicated, stats


def test_duplicates_and_reordering_follow_the_rates_and_the_seed(sb, hooks, receiver):
    ids = sorted(sb.control.truth(conn_id(sb), "purchase-orders", detail=True)["records"])[:96]
    first = run_injected(sb, hooks, receiver, 5, ids)
    again = run_injected(sb, hooks, receiver, 5, ids)
    other = run_injected(sb, hooks, receiver, 6, ids)
    order, duplicated, stats = first
    assert (order, duplicated) == (again[0], again[1])  # reproducible from the seed
    assert order != other[0] and duplicated != other[1]
    assert stats["events"] == stats["delivered"] == 96 and stats["pending"] == 0
    assert stats["duplicates_sent"] == len(duplicated) and 10 <= len(duplicated) <= 40  # 25% of 96 = 24
    assert stats["deliveries"] == 96 + len(duplicated)
    # events emitted in id order, released in shuffled windows of 8
    assert sorted(order) == ids and order != ids
    for w in range(0, 96, 8):
        assert sorted(order[w:w + 8]) == ids[w:w + 8]
    displaced = sum(a != b for a, b in zip(order, ids))
    assert displaced > 96 * 0.6


def test_a_partial_reorder_window_is_released_after_the_hold(sb, hooks, receiver):
    hooks(reorder_window=50, reorder_hold=100.0, time_scale=0.001)  # held at most 100 ms
    for _ in range(3):
        sb.control.emit_event(conn_id(sb), "sync.completed", {"status": "completed"})
    assert sb.control.webhook_stats()["held"] == 3 and not receiver.hits
    deadline = time.monotonic() + 5
    while len(receiver.hits) < 3 and time.monotonic() < deadline:  # no flush: the hold alone releases them
        time.sleep(0.02)
    assert len(receiver.hits) == 3 and sb.control.webhook_stats()["held"] == 0


def test_injected_delays_are_bounded_and_spread(sb, hooks, receiver):
    hooks(max_delay=30.0, time_scale=0.01, workers=8)  # up to 300 ms per delivery
    t0 = time.monotonic()
    sb.control.mutate(conn_id(sb), "vendors", update=1.0)
    stats = sb.control.flush_webhooks(10)
    lags = sorted(h.at - t0 for h in receiver.hits)
    assert stats["delivered"] == stats["events"] == len(lags) >= 20
    assert lags[-1] <= 0.3 + 0.5 and lags[-1] - lags[0] > 0.1
    stamps = [e["data"]["record"]["updated_at"] for e in receiver.events()]
    assert len(set(stamps)) == 1  # one mutation, delivered in whatever order the delays gave


# -- lifecycle ------------------------------------------------------------------------

def test_status_changes_and_emitted_events_become_lifecycle_webhooks(sb, hooks, receiver):
    hooks()
    cid = conn_id(sb, 1)
    sb.control.set_connection_status(cid, "offline")
    sb.control.set_connection_status(cid, "offline")  # no change, no event
    sb.control.set_connection_status(cid, "reauthorization_required")
    sb.control.emit_event(cid, "sync.failed", {"status": "failed", "error": "reauthorization required"})
    sb.control.set_connection_status(cid, "active")
    sb.control.emit_event(cid, "sync.completed", {"status": "completed"})
    sb.control.flush_webhooks(10)
    events = receiver.events()
    assert [(e["type"], e["data"].get("status")) for e in events] == [
        ("connection.status_changed", "offline"),
        ("connection.status_changed", "reauthorization_required"),
        ("connection.reauthorization_required", "reauthorization_required"),
        ("sync.failed", "failed"),
        ("connection.status_changed", "active"),
        ("sync.completed", "completed")]
    assert all(e["connection_id"] == cid and "record" not in e["data"] for e in events)
    assert cid in events[2]["data"]["error"] and events[3]["data"]["error"] == "reauthorization required"
    with pytest.raises(SandboxControlError, match="unknown event type"):
        sb.control.emit_event(cid, "sync.exploded", {})
    with pytest.raises(SandboxControlError, match="NOT_FOUND"):
        sb.control.emit_event("conn_nope", "sync.completed", {})


# -- control surface ------------------------------------------------------------------

def test_delivery_never_slows_the_api(sb, hooks, receiver):
    """The API answers while a delivery is stuck in the receiver: no wall-clock bound, the
    receiver holds its first request until the API calls are done (if the API waited for
    deliveries, mutate or the list would hang until the 60 s attempt timeout and the
    attempt would count as failed)."""
    receiver.hold, receiver.slow_first = threading.Event(), 1
    hooks(time_scale=1.0, timeout=60.0)
    try:
        out = sb.control.mutate(conn_id(sb), "purchase-orders", update=0.3)
        deadline = time.monotonic() + 30
        while not receiver.hits and time.monotonic() < deadline:  # the first delivery is in flight
            time.sleep(0.01)
        assert len(receiver.hits) == 1
        records = listed(sb, "purchase-orders", "2000-01-01T00:00:00Z")  # answered meanwhile
        assert set(out["updated"]) <= set(records)
        stats = sb.control.webhook_stats()
        assert stats["events"] == len(out["updated"]) and stats["pending"] == len(out["updated"])
        assert (stats["delivered"], stats["failed_attempts"], stats["in_flight"]) == (0, 0, 1)
        assert len(receiver.hits) == 1 and not receiver.hold.is_set()  # still held
    finally:
        receiver.hold.set()


def test_switched_off_means_no_events(sb, hooks, receiver):
    hooks()
    sb.control.clear_webhooks()
    sb.control.mutate(conn_id(sb), "assets", update=0.5)
    assert sb.control.emit_event(conn_id(sb), "sync.completed", {})["id"] is None
    stats = sb.control.flush_webhooks(1)
    time.sleep(0.1)
    assert (stats["enabled"], stats["events"], len(receiver.hits)) == (False, 0, 0)


@pytest.mark.parametrize("bad", [
    {"secrets": ["not-a-whsec"]},
    {"secrets": ["whsec_!!!!"]},
    {"secrets": []},
    {"url": "ftp://127.0.0.1/x"},
    {"duplicate_rate": 1.5},
    {"time_scale": 0},
    {"reorder_window": -1},
])
def test_invalid_settings_are_refused_without_echoing_secrets(sb, receiver, bad):
    args = {"url": receiver.url, "secrets": SECRETS} | bad
    with pytest.raises(SandboxControlError, match="400") as exc:
        sb.control.configure_webhooks(args.pop("url"), args.pop("secrets"), **args)
    assert not any(s[6:] in str(exc.value) for s in SECRETS)
    assert sb.control.webhook_stats()["enabled"] is False
