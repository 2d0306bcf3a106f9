"""The writers' lock across processes: a holder killed with SIGKILL never blocks the
others for longer than its lease, a waiter says so once naming the holder, and the
lock is one per destination dataset whatever process or data dir takes it."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from makini_sync.destinations.profiles import load_profile
from makini_sync.integrity.locking import WriterLocks
from tests.destination_targets import MYSQL_URL, POSTGRES_URL
from tests.fleet_support import REPO

HOLDER = "holder-under-test"
LEASE = 3.0
HOLD = f"""
import sys, time
from makini_sync.destinations.profiles import load_profile
from makini_sync.integrity.locking import WriterLocks
connections = sys.argv[2].split(",") if len(sys.argv) > 2 else ["conn_a", "conn_b"]
with WriterLocks(load_profile(sys.argv[1]), "makini", {HOLDER!r}) as locks, locks.connections(connections):
    if len(sys.argv) <= 2:
        locks._take("load")
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture(params=["postgres", "mysql", "mongodb", "duckdb"])
def destination(request, tmp_path, monkeypatch):
    name = request.param
    env = {"postgres": ("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL),
           "mysql": ("DESTINATION__MYSQL__CREDENTIALS", MYSQL_URL),
           "duckdb": ("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "w.duckdb"))}.get(name)
    if name == "mongodb":
        uri = f"{request.getfixturevalue('mongo_uri').rstrip('/')}/makini_lock_{uuid.uuid4().hex[:8]}"
        env = ("DESTINATION__MONGODB__CREDENTIALS", uri)
    monkeypatch.setenv(*env)
    monkeypatch.setenv("MAKINI_LOCK_LEASE_SECONDS", str(LEASE))
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "waiter_dlt"))
    return name


def hold_in_another_process(name, tmp_path, connections=None):
    """Another process holding two connections' locks and the load lock (or, given
    ``connections``, those connections' locks alone) until it is killed."""
    env = {**os.environ, "DLT_DATA_DIR": str(tmp_path / "holder_dlt")}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, name, *([",".join(connections)] if connections else [])],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = holder.stdout.readline()
    assert line.strip() == "held", holder.stderr.read()[-3000:]
    return holder


def test_a_holder_killed_with_sigkill_blocks_the_others_no_longer_than_its_lease(destination, tmp_path, caplog):
    holder = hold_in_another_process(destination, tmp_path)
    got = threading.Event()
    waited = {}

    def wait_for_it():
        with WriterLocks(load_profile(destination), "makini", "waiter") as locks:
            with locks.connections(["conn_b"]), locks.loading():
                got.set()
            waited["s"] = locks.waited

    caplog.set_level(logging.INFO, logger="makini_sync.integrity.locking")
    waiter = threading.Thread(target=wait_for_it, daemon=True)
    try:
        waiter.start()
        # a live holder keeps its lease past twice its length: the renewals work
        alive_for = 2 * LEASE + 1 if destination == "mongodb" else 2.0
        assert not got.wait(alive_for), "the waiter took a lock another process holds"
        assert holder.poll() is None
        holder.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        holder.wait(10)
        assert holder.returncode == -signal.SIGKILL
        lease = LEASE if destination == "mongodb" else 0.0  # database sessions end with the process
        assert got.wait(lease + 5.0), "the lock was not free after the holder died"
        assert time.monotonic() - killed <= lease + 5.0
    finally:
        if holder.poll() is None:
            holder.kill()
        waiter.join(30)
    assert waited["s"] >= 1.0  # it waited for the holder, from its first try to the kill
    waits = [r.getMessage() for r in caplog.records if "waiting for the writer lock" in r.getMessage()]
    assert len(waits) == 1, waits  # once, not once per poll
    expected = {"postgres": HOLDER, "mongodb": HOLDER, "duckdb": f"pid {holder.pid}", "mysql": "MySQL session"}
    assert expected[destination] in waits[0], waits[0]


def test_writers_of_other_connections_do_not_wait_on_each_other(destination, tmp_path):
    if destination == "duckdb":
        pytest.skip("DuckDB: one file, one writer at a time; its file lock is one lock for the whole database")
    holder = hold_in_another_process(destination, tmp_path)
    try:
        with WriterLocks(load_profile(destination), "makini", "other connections") as locks:
            with locks.connections(["conn_c", "conn_d"]):
                assert locks.waited == 0.0
            assert not locks.backend.try_acquire("load")  # while the load lock is still the holder's
    finally:
        holder.kill()
        holder.wait(10)


def test_a_snowflake_lease_names_its_holder_and_expires_when_not_renewed(tmp_path, monkeypatch):
    from tests.fakesnow_support import fakesnow_destination, snowflake_profile

    monkeypatch.setenv("MAKINI_LOCK_LEASE_SECONDS", "2")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    with fakesnow_destination(tmp_path):
        profile = snowflake_profile()
        first = WriterLocks(profile, "makini", "writer A")
        first._take("load")
        backend = first.backend
        result = {}

        def second_writer():
            with WriterLocks(profile, "makini", "writer B") as other:
                result["free at once"] = other.backend.try_acquire("load")
                result["holder"] = other.backend.holder_of("load")
                if result["free at once"]:
                    other.backend.release("load")
                with other.loading():
                    result["waited"] = other.waited

        backend._stop.set()  # writer A dies: its lease is no longer renewed
        backend._renewer.join(5)
        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join(30)
        assert result["free at once"] is False
        assert "writer A" in result["holder"]
        assert 0.5 < result["waited"] < 2.0 + 3.0


def test_a_sync_waits_for_the_writer_that_holds_one_of_its_connections(tmp_path, monkeypatch, request):
    """From reading stored versions to its last load, the sync holds each of its
    connections' locks: while another process holds one, the sync writes nothing."""
    from makini_sandbox import Sandbox
    from makini_sync.run.sync import run_sync
    from tests.destination_targets import destination_target
    from tests.sync_support import FAST_RETRIES

    with destination_target("postgres", tmp_path, monkeypatch, request) as target, \
            Sandbox(seed=61, sizes={"vendors": 120}, connections=2, in_process=True) as sandbox:
        monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "sync_dlt"))
        held = sandbox.connections[1]["id"]
        holder = hold_in_another_process("postgres", tmp_path, connections=[held])
        results = {}
        syncing = threading.Thread(target=lambda: results.update(run=run_sync(
            target.profile, base_url=sandbox.base_url, api_token=sandbox.tokens, entities=["vendors"],
            retry_policy=FAST_RETRIES)))
        try:
            syncing.start()
            syncing.join(3.0)
            assert syncing.is_alive(), "the sync ran while another writer held one of its connections"
            assert target.versions("vendors", sandbox.connections[0]["id"]) == {}  # nothing written meanwhile
        finally:
            holder.kill()
            holder.wait(10)
        syncing.join(120)
        result = results["run"]
        assert result.ok and result.lock_wait_seconds >= 2.0
        assert len(target.versions("vendors", held)) == 120
