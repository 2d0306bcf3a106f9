"""The receiver answers 200 only for signed, well-formed events, stores each once, and nothing else."""

import sqlite3
import time

import httpx
import pytest

from tests.webhook_support import event, new_secret, receiver, signed_headers

SECRETS = [new_secret(), new_secret()]  # rotation: both are valid at once


def stored(tmp_path) -> list:
    path = tmp_path / "inbox.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT webhook_id FROM events ORDER BY webhook_id")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("receiver")
    with receiver(tmp, SECRETS) as url:
        yield tmp, url


def post(url, body, headers):
    return httpx.post(url + "/webhooks/makini", content=body, headers=headers, timeout=10)


def test_signed_event_is_stored_once_whichever_secret_signed_it(server):
    tmp, url = server
    body = event("evt_ok", "record.updated", "conn_a", record={"id": "po_1", "updated_at": "2026-03-01T00:00:00.000Z"})
    assert post(url, body, signed_headers([SECRETS[0]], "evt_ok", body)).json() == {"status": "stored"}
    again = post(url, body, signed_headers([SECRETS[1]], "evt_ok", body))  # a retry, signed with the new secret
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    assert stored(tmp).count("evt_ok") == 1


@pytest.mark.parametrize("case", ["unsigned", "wrong_secret", "tampered", "old_timestamp", "future_timestamp",
                                  "bad_timestamp", "garbage_signature"])
def test_bad_signatures_get_401_and_store_nothing(server, case):
    tmp, url = server
    webhook_id = f"evt_{case}"
    body = event(webhook_id, "record.updated", "conn_a", record={"id": "x", "updated_at": "2026-03-01T00:00:00.000Z"})
    headers = signed_headers(SECRETS, webhook_id, body)
    if case == "unsigned":
        headers = {"content-type": "application/json"}
    elif case == "wrong_secret":
        headers = signed_headers([new_secret()], webhook_id, body)
    elif case == "tampered":
        body = body.replace(b'"x"', b'"y"')
    elif case == "old_timestamp":
        headers = signed_headers(SECRETS, webhook_id, body, when=time.time() - 301)
    elif case == "future_timestamp":
        # well beyond the tolerance: the header is whole seconds (rounded down) and a loaded
        # receiver may take the request a moment later, so a second's margin is not enough
        headers = signed_headers(SECRETS, webhook_id, body, when=time.time() + 330)
    elif case == "bad_timestamp":
        headers["webhook-timestamp"] = "yesterday"
    elif case == "garbage_signature":
        headers["webhook-signature"] = "v1,@@@ v2 nonsense,,"
    response = post(url, body, headers)
    assert response.status_code == 401, response.text
    assert webhook_id not in stored(tmp)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2, 3]", b'"just a string"', b'{"no": "type"}'])
def test_malformed_bodies_get_400_and_store_nothing(server, body):
    tmp, url = server
    webhook_id = f"evt_bad_{abs(hash(body))}"
    response = post(url, body, signed_headers(SECRETS, webhook_id, body))
    assert response.status_code == 400, response.text
    assert webhook_id not in stored(tmp)


def test_bodies_over_one_mib_get_413_and_store_nothing(server):
    tmp, url = server
    record = {"id": "big", "updated_at": "2026-03-01T00:00:00.000Z", "blob": "x" * (1024 * 1024)}
    body = event("evt_big", "record.updated", "conn_a", record=record)
    response = post(url, body, signed_headers(SECRETS, "evt_big", body))
    assert response.status_code == 413
    assert "evt_big" not in stored(tmp)


def metric_values(url) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")}


def test_metrics_count_exactly_what_was_received(tmp_path):
    """A receiver of its own: every counter and gauge equals what this test sent."""
    def record_event(webhook_id):
        return event(webhook_id, "record.updated", "conn_m", record={"id": webhook_id, "updated_at": "2026-03-01T00:00:00.000Z"})

    with receiver(tmp_path, SECRETS) as url:
        assert metric_values(url)["makini_webhooks_received_total"] == 0
        t0 = time.time()
        for webhook_id in ("evt_m1", "evt_m2"):
            body = record_event(webhook_id)
            assert post(url, body, signed_headers(SECRETS, webhook_id, body)).json() == {"status": "stored"}
            if webhook_id == "evt_m1":
                first_acked = time.time()
        body = record_event("evt_m1")
        assert post(url, body, signed_headers(SECRETS, "evt_m1", body)).json() == {"status": "duplicate"}
        body = record_event("evt_m3")
        rejected = [
            post(url, body, {"content-type": "application/json"}),                               # unsigned
            post(url, body, signed_headers([new_secret()], "evt_m3", body)),                     # wrong secret
            post(url, body, signed_headers(SECRETS, "evt_m3", body, when=time.time() - 301)),    # old timestamp
            post(url, body, {**signed_headers(SECRETS, "evt_m3", body), "webhook-timestamp": "yesterday"}),
            post(url, b"[1]", signed_headers(SECRETS, "evt_m4", b"[1]")),                         # not an event
            post(url, b"x" * (1024 * 1024 + 1), signed_headers(SECRETS, "evt_m5", b"x" * (1024 * 1024 + 1))),
        ]
        assert [r.status_code for r in rejected] == [401, 401, 401, 401, 400, 413]
        asked = time.time()
        values = metric_values(url)
        t1 = time.time()
    lag = values.pop("makini_webhooks_lag_seconds")
    assert values == {
        "makini_webhooks_received_total": 9,
        'makini_webhooks_rejected_total{reason="signature"}': 2,
        'makini_webhooks_rejected_total{reason="timestamp"}': 2,
        'makini_webhooks_rejected_total{reason="malformed"}': 1,
        'makini_webhooks_rejected_total{reason="too_large"}': 1,
        'makini_webhooks_rejected_total{reason="store"}': 0,
        "makini_webhooks_stored_total": 2,
        "makini_webhooks_duplicates_total": 1,
        "makini_webhooks_queued": 2,
        "makini_webhooks_processed": 0,
        "makini_webhooks_failed": 0,
        "makini_webhooks_dead_lettered": 0,
    }
    # the oldest queued event (evt_m1) was stored between t0 and its answer; the gauge was read
    # between `asked` and t1 (printed to the millisecond)
    assert asked - first_acked - 0.001 <= lag <= t1 - t0 + 0.001
    assert stored(tmp_path) == ["evt_m1", "evt_m2"]


def test_inbox_append_tells_new_from_duplicate_within_and_across_batches(tmp_path):
    from makini_sync.webhooks.inbox import INSERT_CHUNK, Inbox

    inbox = Inbox(tmp_path / "inbox.sqlite")
    first = [("a", b"1"), ("a", b"1"), ("b", b"2")]
    assert inbox.append(first) == [True, False, True]
    assert inbox.append([("b", b"2"), ("c", b"3")]) == [False, True]
    many = [(f"m{i}", b"x") for i in range(INSERT_CHUNK * 2 + 3)]  # spans several INSERT statements
    assert inbox.append(many + [("m0", b"x")]) == [True] * len(many) + [False]
    assert inbox.counts()["pending"] == 3 + len(many)
