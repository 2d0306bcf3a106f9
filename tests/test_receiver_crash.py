"""kill -9 the receiver under load: every event that got a 200 is processed afterwards."""

import signal
import sqlite3
import threading
import time

import duckdb
import httpx
import psutil

from tests.webhook_support import event, new_secret, receiver, run_webhooks_cli, signed_headers

SECRETS = [new_secret()]
ACKS_BEFORE_KILL = 150  # acknowledged events before the kill (the clients keep posting while it lands)
ACK_TIMEOUT_S = 60      # generous: only a receiver that stopped acknowledging takes this long


def receiver_and_writer(tmp_path) -> list[psutil.Process]:
    """The receiver serving ``tmp_path``'s inbox and its writer child (matched by argv, so no shell is ever taken)."""
    inbox = str(tmp_path / "inbox.sqlite")
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "pipelines.webhooks" in cmdline and inbox in cmdline:
            return [proc, *proc.children()]
    return []


def test_every_acknowledged_event_survives_kill_9(tmp_path):
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(timeout=5) as http:
            i = 0
            while not stop.is_set():
                webhook_id = f"evt_{n}_{i}"
                record = {"id": f"po_{n}_{i}", "updated_at": "2026-03-01T00:00:00.000Z", "status": "approved"}
                body = event(webhook_id, "record.created", "conn_k", record=record)
                try:
                    response = http.post(url + "/webhooks/makini", content=body,
                                         headers=signed_headers(SECRETS, webhook_id, body))
                except httpx.TransportError:
                    return  # the receiver is gone
                if response.status_code == 200:
                    with lock:
                        acked.append(webhook_id)
                i += 1

    with receiver(tmp_path, SECRETS) as url:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        # kill once a number of acks is reached, however fast this machine is
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while len(acked) < ACKS_BEFORE_KILL and time.monotonic() < deadline and any(t.is_alive() for t in threads):
            time.sleep(0.01)
        assert len(acked) >= ACKS_BEFORE_KILL, \
            f"only {len(acked)} events were acknowledged within {ACK_TIMEOUT_S} s (receiver log in {tmp_path})"
        service = receiver_and_writer(tmp_path)
        assert len(service) == 2, f"expected the receiver and its inbox writer, found {service}"
        for proc in service:  # the whole service dies at once, as under an OOM kill of its cgroup
            proc.send_signal(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join()
    with sqlite3.connect(tmp_path / "inbox.sqlite") as conn:
        stored = {row[0] for row in conn.execute("SELECT webhook_id FROM events")}
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events were lost"
    run = run_webhooks_cli(tmp_path, SECRETS, "process", "--once", "--destination", "duckdb")
    assert run.returncode == 0, run.stderr[-2000:]
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as db:
        loaded = {r[0] for r in db.execute("SELECT id FROM makini.purchase_orders").fetchall()}
    assert {a.replace("evt_", "po_") for a in acked} <= loaded
