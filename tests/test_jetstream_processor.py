"""Processors on JetStream: several drain one stream through the fenced path, a killed one loses
nothing, and what keeps failing lands in the dead-letter stream, from which it can be replayed."""

import random
import subprocess
import sys
import time

import duckdb
import orjson
import pytest

from makini_sync.destinations.profiles import load_profile
from makini_sync.webhooks.jetstream_inbox import WEBHOOK_ID
from makini_sync.webhooks.jetstream_processor import ConsumerOptions, JetStreamProcessor
from makini_sync.webhooks.processor import Processor
from tests.jetstream_support import consumer, messages, own_stream, publish
from tests.test_processor import po
from tests.webhook_support import cli_env, event, new_secret, run_webhooks_cli

SECRETS = [new_secret()]
VERSIONS = ["2026-03-01T10:00:00.000Z", "2026-03-02T10:00:00.000Z", "2026-03-03T10:00:00.000Z"]


def history(records: int, seed: int) -> tuple[list[tuple[str, bytes]], dict]:
    """Three versions of each record as events in a shuffled order, some sent twice; the last record
    deleted at its newest time. Returns the events and {id: (status, lines)} of the newest versions."""
    events, newest = [], {}
    for n in range(records):
        rid = f"po_{n}"
        for v, stamp in enumerate(VERSIONS):
            webhook_id = f"{rid}_v{v}"
            if n == records - 1 and v == 2:
                events.append((webhook_id, event(webhook_id, "record.deleted", "conn_a",
                                                 record={"id": rid, "updated_at": stamp})))
            else:
                events.append((webhook_id, event(webhook_id, "record.updated", "conn_a",
                                                 record=po(rid, stamp, lines=v + 1, status=f"v{v}"))))
        if n != records - 1:
            newest[rid] = ("v2", 3)
    rng = random.Random(seed)
    rng.shuffle(events)
    return events + rng.sample(events, 5), newest  # the repeats collapse in the broker


def warehouse(tmp_path) -> dict:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as db:
        rows = db.execute("SELECT id, status FROM makini.purchase_orders").fetchall()
        lines = dict(db.execute("SELECT purchase_order_id, COUNT(*) FROM makini.purchase_orders__line_items"
                                " GROUP BY 1").fetchall())
    return {rid: (status, lines.get(rid, 0)) for rid, status in rows}


def start_processor(tmp_path, inbox_url, name, *args):
    """``process`` as its own host would run it: its own dlt data dir, the shared DuckDB file."""
    log = open(tmp_path / f"processor-{name}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.webhooks", "--inbox", inbox_url, "process", "--destination", "duckdb",
         *args], cwd=tmp_path, env=cli_env(tmp_path, SECRETS, DLT_DATA_DIR=str(tmp_path / f"dlt_{name}")),
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def processed_by(tmp_path, name) -> int:
    text = (tmp_path / f"processor-{name}.log").read_text()
    return sum(int(line.split("processed ")[1].split(",")[0]) for line in text.splitlines() if "processed " in line)


def test_two_processors_drain_one_stream_to_the_newest_versions(tmp_path):
    events, newest = history(records=12, seed=3)
    with own_stream() as (inbox_url, inbox):
        publish(inbox, events)
        procs = [start_processor(tmp_path, inbox_url, name, "--once", "--batch-size", "4", "--ack-wait", "10")
                 for name in ("a", "b")]
        assert [p.wait(timeout=120) for p in procs] == [0, 0], (tmp_path / "processor-a.log").read_text()[-3000:]
        assert warehouse(tmp_path) == newest
        assert messages(inbox) == [] and consumer(inbox).num_ack_pending == 0
        merged = [processed_by(tmp_path, name) for name in ("a", "b")]
        assert sum(merged) == 36 and all(merged), merged  # each event merged once, by one of the two


def test_a_processor_killed_mid_batch_loses_nothing(tmp_path):
    events, newest = history(records=10, seed=5)
    with own_stream() as (inbox_url, inbox):
        publish(inbox, events)
        doomed = start_processor(tmp_path, inbox_url, "doomed", "--batch-size", "100", "--ack-wait", "2")
        deadline = time.monotonic() + 30
        try:
            while not (consumer_or_none(inbox) and consumer(inbox).num_ack_pending):
                assert doomed.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "processor-doomed.log").read_text()[-3000:]
                time.sleep(0.01)
            doomed.kill()  # SIGKILL while it holds the batch, before any ack
            held = consumer(inbox).num_ack_pending
        finally:
            doomed.kill()
            doomed.wait()
        assert held == 30  # all of it was in flight when it died
        survivor = start_processor(tmp_path, inbox_url, "survivor", "--once", "--ack-wait", "2")
        assert survivor.wait(timeout=120) == 0, (tmp_path / "processor-survivor.log").read_text()[-3000:]
        assert processed_by(tmp_path, "survivor") == 30  # redelivered to it after the ack wait
        assert warehouse(tmp_path) == newest
        assert messages(inbox) == [] and consumer(inbox).num_ack_pending == 0


def consumer_or_none(inbox):
    try:
        return consumer(inbox)
    except Exception:  # noqa: BLE001 - not created yet
        return None


def test_unappliable_events_are_dead_lettered_listed_and_replayed(tmp_path):
    good = event("good", "record.created", "conn_a", record=po("a", VERSIONS[0]))
    poison = event("poison", "record.created", "conn_a", entity="spaceships", record=po("z", VERSIONS[0]))
    with own_stream() as (inbox_url, inbox):
        publish(inbox, [("good", good), ("poison", poison)])
        run = run_webhooks_cli(tmp_path, SECRETS, "process", "--once", "--destination", "duckdb", inbox=inbox_url)
        assert run.returncode == 0, run.stderr[-3000:]
        assert warehouse(tmp_path) == {"a": ("approved", 2)}
        listed = run_webhooks_cli(tmp_path, SECRETS, "dlq", "list", inbox=inbox_url)
        assert "poison" in listed.stdout and "unknown entity 'spaceships'" in listed.stdout, listed.stderr
        assert "good" not in listed.stdout
        replayed = run_webhooks_cli(tmp_path, SECRETS, "dlq", "replay", "poison", inbox=inbox_url)
        assert "re-queued 1 event" in replayed.stdout, replayed.stderr
        assert "poison" not in run_webhooks_cli(tmp_path, SECRETS, "dlq", "list", inbox=inbox_url).stdout
        back = messages(inbox)  # in the inbox again, under its webhook-id, with the same body
        assert [(m.headers[WEBHOOK_ID], m.data) for m in back] == [("poison", poison)]


class FailsFor(Processor):
    """The real processor, with the merge failing for the records named (a destination that refuses them)."""

    failing: set = set()

    def _apply(self, deltas, lifecycle):
        if any(getattr(d, "record", {}).get("id") in self.failing for d in deltas):
            raise RuntimeError("the destination refused it")
        super()._apply(deltas, lifecycle)


def test_an_event_failing_every_delivery_lands_in_the_dead_letters_once(isolated_dlt, monkeypatch):
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(isolated_dlt / "w.duckdb"))
    FailsFor.failing = {"flaky"}
    processor = FailsFor(None, load_profile("duckdb"), max_attempts=3)
    with own_stream() as (_, inbox):
        publish(inbox, [("ok", event("ok", "record.updated", "conn_a", record=po("ok", VERSIONS[0]))),
                        ("flaky", event("flaky", "record.updated", "conn_a", record=po("flaky", VERSIONS[0])))])
        drainer = JetStreamProcessor(inbox, processor, ConsumerOptions(ack_wait=5, retry_base=0.05, once=True))
        # the terminate that follows the dead letter is lost once (a processor dying right there):
        # the event comes back, fails again, and its second dead letter is the same one
        from nats.aio.msg import Msg

        real_term, lost = Msg.term, []

        async def term_lost_once(msg):
            if not lost:
                lost.append(msg.metadata.num_delivered)
                await msg.nak()
                return
            await real_term(msg)

        monkeypatch.setattr(Msg, "term", term_lost_once)
        try:
            for _ in range(40):
                drainer.drain()
                if lost and not messages(inbox) and not consumer(inbox).num_ack_pending:
                    break
                time.sleep(0.05)
        finally:
            drainer.close()
        dead = messages(inbox, inbox.dead_stream)
        assert [(m.headers[WEBHOOK_ID], m.headers["Makini-Attempts"]) for m in dead] == [("flaky", "3")]
        assert "the destination refused it" in dead[0].headers["Makini-Error"]
        assert orjson.loads(dead[0].data)["id"] == "flaky"
        assert lost == [3]  # the lost terminate did happen, and did not make a second dead letter
        assert messages(inbox) == [] and consumer(inbox).num_ack_pending == 0  # nothing left behind, nothing lost
    with duckdb.connect(str(isolated_dlt / "w.duckdb"), read_only=True) as db:
        assert db.execute("SELECT id FROM makini.purchase_orders").fetchall() == [("ok",)]


@pytest.fixture(autouse=True)
def _no_leftover_failures():
    yield
    FailsFor.failing = set()
