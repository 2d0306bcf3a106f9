"""Several hosts load one PostgreSQL dataset at once: separate data dirs, disjoint
shards, records changing between pages, the webhook processor merging deltas into
the same tables meanwhile. Every round ends exact, and a host whose disk was
wiped fetches only changes."""

import shutil
import threading

from makini_sandbox import Sandbox
from makini_sync.integrity.deltas import Upsert, load_deltas
from sources.makini.settings import ENTITIES
from tests.destination_targets import destination_target
from tests.fleet_support import PG, assert_target_exact, finish, list_pages, run_hosts, shards_of, start_worker
from tests.sync_support import mutating

SIZES = {"purchase-orders": 1100, "work-orders": 300, "assets": 300, "inventory-items": 300, "vendors": 250}


class DeltaWriter:
    """The webhook processor's path (load_deltas) merging the sandbox's current records
    of one connection, over and over, while the syncs run."""

    def __init__(self, profile, sandbox, connection_id):
        self.profile, self.sandbox, self.connection_id = profile, sandbox, connection_id
        self.stop, self.batches, self.errors = threading.Event(), 0, []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        entity = ENTITIES["vendors"]
        while not self.stop.is_set():
            try:
                records = self.sandbox.control.records(self.connection_id, entity.slug)[:40]
                load_deltas(self.profile, [Upsert(self.connection_id, entity, r) for r in records])
                self.batches += 1
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=120)


def test_two_hosts_load_one_postgres_dataset_at_once_and_every_round_ends_exact(
        isolated_dlt, monkeypatch, request):
    with destination_target("postgres", isolated_dlt, monkeypatch, request) as target, \
            Sandbox(seed=41, sizes=SIZES, connections=4, in_process=True) as sandbox:
        shards = shards_of(sandbox, 2)
        assert all(shards), f"the seed must give both shards a connection: {shards}"
        hosts = [isolated_dlt / "host_a", isolated_dlt / "host_b"]
        sandbox.control.set_faults(seed=9, slow_rate=0.3, slow_seconds=0.02)
        for round_ in range(3):
            with mutating(sandbox, interval=0.05, seed=10 * round_) as changes, \
                    DeltaWriter(target.profile, sandbox, shards[round_ % 2][0]) as deltas:
                run_hosts(sandbox, hosts)
            assert changes and deltas.batches and not deltas.errors, (len(changes), deltas.batches, deltas.errors)
            run_hosts(sandbox, hosts)  # what changed while they paged
            assert_target_exact(target, sandbox)

        # host A's disk is wiped (a new container): it resumes from what the destination holds
        shutil.rmtree(hosts[0])
        for connection_id in shards[0]:
            for entity in ENTITIES.values():
                sandbox.control.mutate(connection_id, entity.slug, update=0.01, seed=77)
        sandbox.control.requests_served(reset=True)
        (summary,) = [finish(start_worker(sandbox, hosts[0], "--destination", "postgres", "--shard", "1/2",
                                          extra_env=PG))]
        served = sandbox.control.requests_served()
        walks = len(shards[0]) * len(ENTITIES)
        assert list_pages(served, shards[0]) == walks, served  # one page of changes per walk, not a full walk
        assert list_pages(served, shards[1]) == 0
        assert "shard_1_of_2" in summary
        assert_target_exact(target, sandbox)
