"""Receivers on JetStream: 200 only once the broker stored the event, rejections store nothing,
duplicates collapse across receivers, and a broker out of reach means 503, never 200."""

import concurrent.futures
import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.jetstream_support import messages, own_stream
from tests.test_receiver import metric_values
from tests.webhook_support import cli_env, event, free_port, new_secret, receiver, signed_headers, wait_until_serving

SECRETS = [new_secret()]
T1 = "2026-03-01T00:00:00.000Z"


def record_event(webhook_id, connection_id="conn_a"):
    return event(webhook_id, "record.updated", connection_id, record={"id": webhook_id, "updated_at": T1})


def post(url, webhook_id, body=None, headers=None):
    body = record_event(webhook_id) if body is None else body
    headers = signed_headers(SECRETS, webhook_id, body) if headers is None else headers
    return httpx.post(url + "/webhooks/makini", content=body, headers=headers, timeout=10)


def stored_ids(inbox):
    return [m.headers["Nats-Msg-Id"] for m in messages(inbox)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with own_stream() as (inbox_url, inbox), receiver(tmp_path_factory.mktemp("js"), SECRETS, inbox=inbox_url) as url:
        yield url, inbox


def test_a_200_means_the_stream_holds_the_event(served):
    url, inbox = served
    body = record_event("evt_ok", connection_id="conn.a b")
    first = post(url, "evt_ok", body)
    assert first.status_code == 200 and first.json() == {"status": "stored"}
    stored = messages(inbox)  # read right after the answer: the publish was acknowledged before it
    assert [(m.subject, m.headers["Nats-Msg-Id"], m.data) for m in stored] == \
        [(f"{inbox.stream}.conn_a_b.record_updated", "evt_ok", body)]
    again = post(url, "evt_ok", body)  # Makini's retry
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    assert stored_ids(inbox) == ["evt_ok"]
    values = metric_values(url)
    assert (values["makini_webhooks_stored_total"], values["makini_webhooks_duplicates_total"],
            values["makini_webhooks_queued"]) == (1, 1, 1)


def rejected_request(case, webhook_id):
    body = record_event(webhook_id)
    if case == "unsigned":
        return body, {"content-type": "application/json"}
    if case == "wrong_secret":
        return body, signed_headers([new_secret()], webhook_id, body)
    if case == "old_timestamp":
        return body, signed_headers(SECRETS, webhook_id, body, when=time.time() - 301)
    if case == "tampered":
        return body.replace(b"conn_a", b"conn_b"), signed_headers(SECRETS, webhook_id, body)
    if case == "not_json":
        return b"{not json", signed_headers(SECRETS, webhook_id, b"{not json")
    if case == "no_type":
        return b'{"no": "type"}', signed_headers(SECRETS, webhook_id, b'{"no": "type"}')
    big = event(webhook_id, "record.updated", "conn_a", record={"id": "x", "updated_at": T1, "blob": "x" * 2 ** 20})
    return big, signed_headers(SECRETS, webhook_id, big)


@pytest.mark.parametrize("case, status", [("unsigned", 401), ("wrong_secret", 401), ("old_timestamp", 401),
                                          ("tampered", 401), ("not_json", 400), ("no_type", 400),
                                          ("too_large", 413)])
def test_rejected_requests_store_nothing(served, case, status):
    url, inbox = served
    webhook_id = f"evt_{case}"
    body, headers = rejected_request(case, webhook_id)
    response = post(url, webhook_id, body, headers)
    assert response.status_code == status, response.text
    assert webhook_id not in stored_ids(inbox)


def start_receiver(tmp_path, inbox_url):
    port = free_port()
    log = tmp_path / f"receiver-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.webhooks", "--inbox", inbox_url, "serve",
                                 "--port", str(port)], cwd=tmp_path, env=cli_env(tmp_path, SECRETS),
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url, proc, log)
    return proc, url


def test_two_receivers_store_each_event_once_through_crossed_retries_and_a_killed_receiver(tmp_path):
    ids = [f"evt_{n:02d}" for n in range(40)]
    with own_stream() as (inbox_url, inbox):
        (proc_a, url_a), (proc_b, url_b) = start_receiver(tmp_path, inbox_url), start_receiver(tmp_path, inbox_url)
        answers: dict[str, list[str]] = {w: [] for w in ids}
        retried_on_b: list[str] = []

        def deliver(webhook_id, first, second):
            """Makini's view: the first receiver, and on anything but a 200 a retry on the other."""
            for url in (first, second):
                try:
                    response = post(url, webhook_id)
                except httpx.TransportError:
                    continue
                if response.status_code == 200:
                    answers[webhook_id].append(response.json()["status"])
                    if url != first:
                        retried_on_b.append(webhook_id)
                    return

        try:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                # the first half reaches both receivers at once (a retry crossing the original)
                crossed = [pool.submit(deliver, w, url_a, url_b) for w in ids[:20]]
                crossed += [pool.submit(deliver, w, url_b, url_a) for w in ids[:20]]
                concurrent.futures.wait(crossed)
                # the second half goes to A, which is killed while they are in flight
                later = [pool.submit(deliver, w, url_a, url_b) for w in ids[20:]]
                while sum(bool(answers[w]) for w in ids[20:]) < 5:
                    time.sleep(0.002)
                proc_a.kill()
                concurrent.futures.wait(later)
        finally:
            for proc in (proc_a, proc_b):
                proc.kill()
                proc.wait()
        assert all(answers[w] for w in ids), [w for w in ids if not answers[w]]  # every event acknowledged
        assert sorted(stored_ids(inbox)) == ids  # ... and stored exactly once
        # a crossed pair: one receiver stored it, the other found the duplicate in the broker's window
        assert all(sorted(answers[w]) == ["duplicate", "stored"] for w in ids[:20]), answers
        assert retried_on_b, "A was killed after it had answered everything: the test proved nothing"
        # after the kill: an event A stored but could not answer is a duplicate on B
        assert all(answers[w] in (["stored"], ["duplicate"]) for w in ids[20:]), answers


def test_a_broker_out_of_reach_means_503_and_unhealthy(tmp_path):
    port = free_port()  # nothing listens there
    log = tmp_path / "receiver.log"
    with open(log, "ab") as out:
        http_port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.webhooks", "--inbox",
                                 f"nats://127.0.0.1:{port}/t_unreachable", "serve", "--port", str(http_port)],
                                cwd=tmp_path, env=cli_env(tmp_path, SECRETS), stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.1)
        assert health.status_code == 503 and "broker" in health.json()["status"]
        refused = post(url, "evt_down")
        assert refused.status_code == 503 and refused.json()["error"] == "store", refused.text
        assert post(url, "evt_down", headers={"content-type": "application/json"}).status_code == 401
        assert httpx.get(url + "/healthz", timeout=5).status_code == 503
        assert metric_values(url)['makini_webhooks_rejected_total{reason="store"}'] == 1
    finally:
        proc.kill()
        proc.wait()


def start_nats(store, port):
    """A private nats-server (this test stops it; the shared one is left alone)."""
    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(server):
        if os.environ.get("CI"):
            pytest.fail("nats-server is not installed; .ci/run needs it")
        pytest.skip("no nats-server here")
    proc = subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        assert proc.poll() is None and time.monotonic() < deadline, "nats-server did not start"
        time.sleep(0.05)


def wait_for_health(url, status, timeout=20):
    deadline = time.monotonic() + timeout
    while (answer := httpx.get(url + "/healthz", timeout=5)).status_code != status:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.1)
    return answer


def test_a_broker_that_stops_means_503_until_it_is_back(tmp_path):
    port = free_port()
    broker = start_nats(tmp_path / "js", port)
    try:
        with receiver(tmp_path, SECRETS, inbox=f"nats://127.0.0.1:{port}/t_stops") as url:
            assert post(url, "evt_before").json() == {"status": "stored"}
            broker.kill()
            broker.wait()
            assert "broker" in wait_for_health(url, 503).json()["status"]
            down = [post(url, "evt_during") for _ in range(3)]
            assert [r.status_code for r in down] == [503] * 3, down[0].text
            broker = start_nats(tmp_path / "js", port)  # the same store: what was acknowledged is still there
            wait_for_health(url, 200)
            assert post(url, "evt_during").json() == {"status": "stored"}
            assert post(url, "evt_before").json() == {"status": "duplicate"}
    finally:
        broker.kill()
        broker.wait()
