"""The receiver's inbox writer process: its wire format, its secrets, and what happens when it dies."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import psutil

from makini_sync.webhooks.inbox_writer import decode_replies, decode_requests, encode_reply, encode_request
from tests.webhook_support import (cli_env, event, free_port, new_secret, receiver, signed_headers,
                                   wait_until_serving)

SECRETS = [new_secret()]


def feed_in_pieces(decode, frames: bytes, rng: random.Random) -> list:
    """Decode ``frames`` delivered in random pieces, as a socket may deliver them."""
    buffer, decoded, position = bytearray(), [], 0
    while position < len(frames):
        step = rng.randint(1, 40)
        buffer += frames[position:position + step]
        position += step
        decoded.extend(decode(buffer))
    assert not buffer, "bytes left over after the last complete frame"
    return decoded


def test_frames_cut_anywhere_decode_to_the_same_requests_and_replies():
    rng = random.Random(7)
    requests = [(seq, f"evt_{seq}".encode(), b"1764300000", b"v1,abc= v1,def=", os.urandom(rng.randint(0, 300)))
                for seq in range(50)]
    assert feed_in_pieces(decode_requests, b"".join(encode_request(*r) for r in requests), rng) == requests
    replies = [(seq, rng.choice([200, 401, 503]), rng.choice([b"stored", b"signature\nno valid signature", b""]))
               for seq in range(50)]
    assert feed_in_pieces(decode_replies, b"".join(encode_reply(*r) for r in replies), rng) == replies


def writer_process(inbox) -> psutil.Process:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if "makini_sync.webhooks.inbox_writer" in cmdline and str(inbox) in cmdline:
                return proc
        time.sleep(0.05)
    raise AssertionError("no inbox writer process found")


def post(url: str, webhook_id: str) -> httpx.Response:
    body = event(webhook_id, "record.created", "conn_w",
                 record={"id": webhook_id, "updated_at": "2026-03-01T00:00:00.000Z", "status": "open"})
    return httpx.post(url + "/webhooks/makini", content=body, headers=signed_headers(SECRETS, webhook_id, body),
                      timeout=10)


def stored_ids(inbox) -> set:
    with sqlite3.connect(inbox) as conn:
        return {row[0] for row in conn.execute("SELECT webhook_id FROM events")}


def test_the_writer_gets_the_secrets_over_its_socket_only_and_stops_with_the_receiver(tmp_path):
    with receiver(tmp_path, SECRETS) as url:
        assert post(url, "evt_secret").status_code == 200
        writer = writer_process(tmp_path / "inbox.sqlite")
        exposed = " ".join(writer.cmdline()) + " " + " ".join(f"{k}={v}" for k, v in writer.environ().items())
        assert SECRETS[0] not in exposed and SECRETS[0].removeprefix("whsec_") not in exposed
    writer.wait(timeout=10)  # raises if the writer outlives its receiver


def test_a_body_near_the_size_limit_is_verified_and_stored_whole(tmp_path):
    padding = "x" * (1024 * 1024 - 2048)
    body = event("evt_big", "record.created", "conn_w",
                 record={"id": "po_big", "updated_at": "2026-03-01T00:00:00.000Z", "note": padding})
    assert 1024 * 1024 - 4096 < len(body) <= 1024 * 1024
    with receiver(tmp_path, SECRETS) as url:
        answer = httpx.post(url + "/webhooks/makini", content=body,
                            headers=signed_headers(SECRETS, "evt_big", body), timeout=30)
        assert answer.status_code == 200 and answer.json() == {"status": "stored"}
    with sqlite3.connect(tmp_path / "inbox.sqlite") as conn:
        assert conn.execute("SELECT body FROM events WHERE webhook_id = 'evt_big'").fetchone()[0] == body


def dead(process: psutil.Process) -> bool:
    """Gone, or a zombie its parent has not reaped yet (it may be reaped
    between the two questions: psutil then says there is no such process)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_killed_writer_costs_503s_never_a_false_200_and_a_new_writer_takes_over(tmp_path):
    inbox = tmp_path / "inbox.sqlite"
    with receiver(tmp_path, SECRETS) as url:
        assert post(url, "evt_before").status_code == 200
        first = writer_process(inbox)
        first.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not dead(first) and time.monotonic() < deadline:
            time.sleep(0.01)
        answers = {}
        for n in range(20):
            answers[f"evt_after_{n}"] = post(url, f"evt_after_{n}").status_code
        assert set(answers.values()) <= {200, 503}, answers
        assert answers[f"evt_after_{len(answers) - 1}"] == 200, "the receiver did not start a new writer"
        assert writer_process(inbox).pid != first.pid
        acknowledged = {webhook_id for webhook_id, status in answers.items() if status == 200}
        assert acknowledged | {"evt_before"} <= stored_ids(inbox)
        metrics = httpx.get(url + "/metrics").text
    assert "makini_webhooks_stored_total" in metrics


def test_ctrl_c_to_the_process_group_shuts_down_cleanly_and_keeps_what_was_acknowledged(tmp_path):
    port = free_port()
    log = tmp_path / "receiver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.webhooks", "--inbox", str(tmp_path / "inbox.sqlite"), "serve",
             "--port", str(port)],
            cwd=tmp_path, env=cli_env(tmp_path, SECRETS), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal would give it
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, proc, log)
        acknowledged = [f"evt_int_{n}" for n in range(5) if post(url, f"evt_int_{n}").status_code == 200]
        writer = writer_process(tmp_path / "inbox.sqlite")
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        writer.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acknowledged) == 5 and set(acknowledged) <= stored_ids(tmp_path / "inbox.sqlite")
    assert "Traceback" not in log.read_text()
