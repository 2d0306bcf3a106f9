"""Webhooks on JetStream end to end, into PostgreSQL: the sandbox's signed change events reach two
receivers sharing one stream (duplicates crossing between them, one receiver killed halfway and
the rest retried on the other, forged and tampered requests mixed in), two processors drain the
stream (one killed mid-batch), and the warehouse ends holding exactly the newest version of every
record the accepted events describe: no older version, no extra row, nothing forged, no duplicate.

The sandbox delivers to a recorder (tests/test_sandbox_webhooks.Receiver); the test then plays
Makini's sender with the recorded requests, byte for byte, so that it, not the sandbox's single
URL, decides which receiver gets what, and when the first one dies.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import httpx
import psycopg
import pytest

from makini_sandbox import Sandbox
from tests.destination_targets import POSTGRES_URL, _drop_postgres, destination_target
from tests.jetstream_support import consumer, messages, own_stream, with_js
from tests.test_sandbox_webhooks import Hit, Receiver
from tests.webhook_support import cli_env, free_port, new_secret, signed_headers, wait_until_serving

SECRETS = [new_secret()]
SIZES = {"purchase-orders": 30, "work-orders": 0, "assets": 0, "inventory-items": 0, "vendors": 15}
TABLES = {"purchase-orders": "purchase_orders", "vendors": "vendors"}
BATCH = 25  # events per processor batch: small, so the kill lands while a batch is held
ACK_WAIT = 2  # seconds before the killed processor's messages go to the other one
FORGED_STAMP = "2099-01-01T00:00:00.000Z"  # what forged and tampered requests claim; never in the warehouse
DEADLINE = 20.0  # seconds for any one phase to finish (each is ~1-5 s when all is well)


def recorded_changes(sandbox: Sandbox) -> list[Hit]:
    """Creates, then four rounds of updates of the same records (and of some that existed before):
    the sandbox's signed deliveries of them, as it sent them, one per event."""
    recorder = Receiver()
    try:
        sandbox.control.configure_webhooks(recorder.url, SECRETS, time_scale=0.001, timeout=5.0)
        cid = sandbox.connections[0]["id"]
        changed = {}
        for entity, inserts in (("purchase-orders", 20), ("vendors", 10)):
            older = sorted(sandbox.control.truth(cid, entity, detail=True)["records"])[:5]
            changed[entity] = sandbox.control.mutate(cid, entity, insert=inserts, seed=1)["inserted"] + older
        for round_ in range(4):
            for entity, ids in changed.items():
                sandbox.control.mutate(cid, entity, ids=ids, update=1.0, seed=round_)
        stats = sandbox.control.flush_webhooks(10)
        assert stats["pending"] == 0 and stats["delivered"] == stats["events"] == len(recorder.hits), stats
        sandbox.control.clear_webhooks()
        return list(recorder.hits)
    finally:
        recorder.stop()


def signature_headers(hit: Hit) -> dict:
    """The headers Makini signs with, as the sandbox sent them (not the recorder's host, length ...)."""
    return {name: hit.headers[name] for name in ("webhook-id", "webhook-timestamp", "webhook-signature",
                                                   "content-type")}


def newest_versions(hits: list[Hit]) -> dict[str, dict[str, dict]]:
    """{table: {id: record}}: the newest version of each record the events describe."""
    newest: dict[str, dict[str, dict]] = defaultdict(dict)
    for hit in hits:
        data = hit.event["data"]
        record, held = data["record"], newest[TABLES[data["entity"]]]
        if record["id"] not in held or record["updated_at"] > held[record["id"]]["updated_at"]:
            held[record["id"]] = record
    return dict(newest)


def forged(hits: list[Hit]) -> list[tuple[bytes, dict]]:
    """(body, headers) of requests a receiver must refuse: events signed with a stranger's
    secret, and genuine events whose body was changed after signing (sent before the genuine ones)."""
    out = []
    for n, hit in enumerate(hits[:6]):
        record = hit.event["data"]["record"]
        body = hit.body.replace(record["updated_at"].encode(), FORGED_STAMP.encode())
        if n % 2:
            out.append((body, signature_headers(hit)))  # tampered: the genuine signature
        else:
            webhook_id = f"evt_forged_{n}"
            body = body.replace(hit.headers["webhook-id"].encode(), webhook_id.encode())
            out.append((body, signed_headers([new_secret()], webhook_id, body)))
    return out


def start(tmp_path: Path, name: str, inbox_url: str, *args: str) -> subprocess.Popen:
    """``python -m pipelines.webhooks --inbox URL ARGS`` as its own host would run it (its own dlt data dir)."""
    with open(tmp_path / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines.webhooks", "--inbox", inbox_url, *args], cwd=tmp_path,
            env=cli_env(tmp_path, SECRETS, DLT_DATA_DIR=str(tmp_path / f"dlt_{name}"),
                        DESTINATION__POSTGRES__CREDENTIALS=POSTGRES_URL),
            stdout=log, stderr=subprocess.STDOUT)


def post(client: httpx.Client, url: str, body: bytes, headers: dict) -> tuple[Optional[int], Optional[str]]:
    """(status, the receiver's "stored"/"duplicate"), or (None, None) when the receiver is gone."""
    try:
        response = client.post(url + "/webhooks/makini", content=body, headers=headers)
    except httpx.TransportError:
        return None, None
    return response.status_code, response.json().get("status") if response.status_code == 200 else None


def merged_rows() -> int:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        try:
            return sum(conn.execute(f"SELECT count(*) FROM makini.{table}").fetchone()[0]
                       for table in TABLES.values())
        except psycopg.errors.UndefinedTable:
            return 0


def wait_for(condition: Callable[[], bool], what: str, logs: list[Path], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s; " + \
            "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in logs)
        time.sleep(0.05)


def stream_state(inbox) -> object:
    return with_js(lambda js: js.stream_info(inbox.stream)).state


@pytest.fixture
def postgres(isolated_dlt, monkeypatch, request):
    """A clean ``makini`` dataset in PostgreSQL (the processors' dataset is fixed), dropped again
    afterwards with the helper that cleans it before every PostgreSQL test."""
    with destination_target("postgres", isolated_dlt, monkeypatch, request) as target:
        try:
            yield target
        finally:
            _drop_postgres()


def test_two_receivers_and_two_processors_with_kills_end_with_the_newest_version_of_each_record(
        postgres, tmp_path):
    with own_stream() as (inbox_url, inbox), contextlib.ExitStack() as procs:
        # everything starts at once; the processors wait for the stream the receivers make
        ports = {name: free_port() for name in ("a", "b")}
        receivers = {name: start(tmp_path, f"receiver-{name}", inbox_url, "serve", "--port", str(port))
                     for name, port in ports.items()}
        processors = {name: start(tmp_path, f"processor-{name}", inbox_url, "process", "--destination", "postgres",
                                  "--batch-size", str(BATCH), "--ack-wait", str(ACK_WAIT), "--poll-window", "3600")
                      for name in ("doomed", "survivor")}
        for proc in (*receivers.values(), *processors.values()):
            procs.callback(proc.wait)
            procs.callback(proc.kill)  # before own_stream deletes the stream, which they would make again
        logs = sorted(tmp_path.glob("*.log"))

        with Sandbox(seed=3, sizes=SIZES, connections=1, in_process=True) as sandbox:
            hits = recorded_changes(sandbox)
            cid = sandbox.connections[0]["id"]
            newest = newest_versions(hits)
            for entity, table in TABLES.items():  # the events tell what the sandbox holds now
                truth = sandbox.control.truth(cid, entity, detail=True)["records"]
                assert {rid: truth[rid]["updated_at"] for rid in newest[table]} == \
                    {rid: r["updated_at"] for rid, r in newest[table].items()}
        assert len(hits) == 190 and sum(map(len, newest.values())) == 40  # 40 records, 4 or 5 versions each
        random.Random(5).shuffle(hits)  # older versions overtake newer ones on the way

        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for name in ("a", "b"):
            wait_until_serving(url[name], receivers[name], tmp_path / f"receiver-{name}.log")

        answers: dict[str, list[tuple[str, Optional[int], Optional[str]]]] = defaultdict(list)

        def deliver(hit: Hit, first: str, second: str) -> None:
            """Makini's sender: the first receiver, and on anything but a 200 the other."""
            webhook_id = hit.headers["webhook-id"]
            for name in (first, second):
                status, stored = post(client, url[name], hit.body, signature_headers(hit))
                answers[webhook_id].append((name, status, stored))
                if status == 200:
                    return

        refused = []
        half = len(hits) // 2
        with concurrent.futures.ThreadPoolExecutor(8) as pool, httpx.Client(timeout=10, trust_env=False) as client:
            for body, headers in forged(hits):
                refused += [pool.submit(post, client, url[name], body, headers) for name in ("a", "b")]
            concurrent.futures.wait(refused)
            # the first half goes to A; every third also to B at the same moment (a retry crossing its original)
            firsts = [pool.submit(deliver, hit, "a", "b") for hit in hits[:half]]
            firsts += [pool.submit(deliver, hit, "b", "a") for hit in hits[:half:3]]
            concurrent.futures.wait(firsts)
            # the second half goes to A, which is killed while they are in flight
            later = [pool.submit(deliver, hit, "a", "b") for hit in hits[half:]]
            wait_for(lambda: sum(any(s == 200 for _, s, _ in answers[h.headers["webhook-id"]])
                                 for h in hits[half:]) >= 5, "5 answers from A", logs)
            receivers["a"].kill()
            concurrent.futures.wait(later)
            for future in (*firsts, *later):
                future.result()

        assert [future.result()[0] for future in refused] == [401] * len(refused)
        accepted = {w for w, tried in answers.items() if any(status == 200 for _, status, _ in tried)}
        assert accepted == {hit.headers["webhook-id"] for hit in hits}  # every event acknowledged by one of them
        retried = [w for w, tried in answers.items() if tried[0][:2] == ("a", None)]
        assert retried, "A was killed after it had answered everything: the retry on B proved nothing"
        for webhook_id, tried in answers.items():  # stored by at most one receiver, whoever answered
            assert [stored for _, _, stored in tried].count("stored") <= 1, (webhook_id, tried)
        for hit in hits[:half:3]:  # a crossed pair: one receiver stored it, the other found the duplicate
            tried = answers[hit.headers["webhook-id"]]
            assert sorted((name, stored) for name, _, stored in tried) in (
                [("a", "duplicate"), ("b", "stored")], [("a", "stored"), ("b", "duplicate")]), tried
        assert stream_state(inbox).last_seq == len(hits)  # each accepted event stored once; nothing refused

        # the doomed processor dies holding a batch: merging has begun and both hold messages
        # (each holds at most --batch-size, so more than that in flight means the doomed one has some)
        wait_for(lambda: merged_rows() > 0 and consumer(inbox).num_ack_pending > BATCH,
                 "both processors holding a batch", logs)
        processors["doomed"].kill()
        held = consumer(inbox).num_ack_pending
        assert consumer(inbox).config.ack_wait == ACK_WAIT

        # the survivor gets what the doomed one held after the ack wait, and drains the rest
        def settled() -> bool:
            info = consumer(inbox)
            return not info.num_pending and not info.num_ack_pending and not stream_state(inbox).messages

        wait_for(settled, "the stream drained", logs)
        assert processors["survivor"].poll() is None, (tmp_path / "processor-survivor.log").read_text()[-3000:]
        redelivered = consumer(inbox).delivered.consumer_seq - stream_state(inbox).last_seq  # deliveries - events
        assert redelivered > 0, f"nothing the doomed processor held ({held} in flight) came back"
        assert messages(inbox, inbox.dead_stream) == []

        assert merged_rows() == 40  # whatever the connection id
        for table, records in newest.items():  # one row per record (versions() refuses duplicates), the newest
            assert postgres.versions(table, cid) == {rid: r["updated_at"] for rid, r in records.items()}
        assert not any(FORGED_STAMP in v for t in TABLES.values() for v in postgres.versions(t, cid).values())
        assert postgres.line_counts(cid) == {rid: len(r["line_items"]) for rid, r in newest["purchase_orders"].items()
                                             if r["line_items"]}
        rows = postgres.query("purchase_orders", ["id", "status", "order_number"], cid)
        assert sorted(rows) == sorted((rid, r["status"], r["order_number"])
                                      for rid, r in newest["purchase_orders"].items())
        rows = postgres.query("vendors", ["id", "name", "payment_terms", "email"], cid)
        assert sorted(rows) == sorted((rid, r["name"], r["payment_terms"], r["email"])
                                      for rid, r in newest["vendors"].items())
