"""A full refresh in a dataset several workers share deletes and reloads only its
own worker's connections; one killed part way leaves rows missing that the next
run loads again."""

import shutil
import signal
import time

import psycopg

from makini_sandbox import Sandbox
from tests.destination_targets import POSTGRES_URL, destination_target
from tests.fleet_support import assert_target_exact, finish, start_worker
from tests.fleet_support import PG, run_hosts, shards_of

SIZES = {"purchase-orders": 1100, "work-orders": 300, "assets": 300, "inventory-items": 300, "vendors": 250}


def rows_of(connection_ids, table="purchase_orders"):
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM makini.{table} WHERE connection_id = ANY(%s)",
                            [list(connection_ids)]).fetchone()[0]


def load_ids_of(connection_ids):
    """Each row with the transaction that wrote it (PostgreSQL's xmin): changes whenever a row is rewritten."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        return sorted(conn.execute("SELECT id, xmin::text FROM makini.vendors WHERE connection_id = ANY(%s)",
                                   [list(connection_ids)]).fetchall())


def test_a_full_refresh_resets_only_its_own_connections_even_when_killed_part_way(
        isolated_dlt, monkeypatch, request):
    with destination_target("postgres", isolated_dlt, monkeypatch, request) as target, \
            Sandbox(seed=41, sizes=SIZES, connections=4, in_process=True) as sandbox:
        mine, theirs = shards_of(sandbox, 2)
        assert mine and theirs
        hosts = [isolated_dlt / "host_a", isolated_dlt / "host_b"]
        run_hosts(sandbox, hosts)
        assert_target_exact(target, sandbox)
        untouched = load_ids_of(theirs)
        full = rows_of(mine)

        # a full refresh that finishes: host A's rows are reloaded, host B's are left as they were
        summary = finish(start_worker(sandbox, hosts[0], "--destination", "postgres", "--shard", "1/2",
                                      "--full-refresh", extra_env=PG))
        loaded = next(line.split() for line in summary.splitlines() if line.split()[:1] == ["purchase_orders"])
        assert int(loaded[1]) == full  # every order of host A's connections loaded again, not one more
        assert load_ids_of(theirs) == untouched
        assert_target_exact(target, sandbox)

        # one killed after it deleted its rows, before it reloaded them all
        sandbox.control.set_faults(seed=3, slow_rate=1.0, slow_seconds=0.05)
        worker = start_worker(sandbox, hosts[0], "--destination", "postgres", "--shard", "1/2", "--full-refresh",
                              "--rows-per-load", "300", extra_env=PG)
        deadline = time.monotonic() + 120
        while rows_of(mine) >= full and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.poll() is None, "the refresh ended before it could be killed part way"
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        assert worker.returncode == -signal.SIGKILL
        sandbox.control.clear_faults()
        assert rows_of(mine) < full  # rows were missing when it died
        assert load_ids_of(theirs) == untouched

        # and a new container: the bookmarks the refresh emptied were committed before it deleted a row
        shutil.rmtree(hosts[0])
        finish(start_worker(sandbox, hosts[0], "--destination", "postgres", "--shard", "1/2", extra_env=PG))
        assert load_ids_of(theirs) == untouched
        assert_target_exact(target, sandbox)
