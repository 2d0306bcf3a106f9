"""End to end: sandbox mutations arrive as webhooks (duplicated, reordered, delayed),
the receiver stores them, the processor merges them; the warehouse ends equal to the truth."""

import pytest

from makini_sandbox import Sandbox
from makini_sync.run.sync import run_sync
from makini_sync.webhooks.inbox import Inbox
from makini_sync.webhooks.processor import Processor
from sources.makini.settings import ENTITIES
from tests.destination_targets import destination_target
from tests.sync_support import FAST_RETRIES
from tests.test_destinations import contents, truth_of
from tests.webhook_support import new_secret, receiver

SIZES = {"purchase-orders": 150, "work-orders": 60, "assets": 40, "inventory-items": 60, "vendors": 30}
SECRETS = [new_secret(), new_secret()]


@pytest.fixture(params=["duckdb", "postgres"])
def target(request, isolated_dlt, monkeypatch):
    with destination_target(request.param, isolated_dlt, monkeypatch, request) as t:
        yield t


def test_webhooks_keep_the_warehouse_equal_to_the_truth(target, tmp_path):
    with Sandbox(seed=9, sizes=SIZES, connections=2, in_process=True) as sandbox, receiver(tmp_path, SECRETS) as url:
        first = run_sync(target.profile, base_url=sandbox.base_url, api_token=sandbox.tokens, retry_policy=FAST_RETRIES)
        assert first.ok
        sandbox.control.configure_webhooks(url + "/webhooks/makini", SECRETS, time_scale=0.001, duplicate_rate=0.3,
                                           reorder_window=16, max_delay=20.0, seed=4, timeout=5.0)
        for round_ in range(3):
            for connection in sandbox.connections:
                for entity in ENTITIES.values():
                    sandbox.control.mutate(connection["id"], entity.slug, update=0.1, insert=2, soft_delete=0.03,
                                           hard_delete=0.03, seed=round_ * 100 + len(entity.slug))
        stats = sandbox.control.flush_webhooks(timeout=60)
        assert stats["pending"] == 0 and stats["given_up"] == 0, stats
        assert stats["duplicates_sent"] > 0 and stats["events"] > 100, stats
        sandbox.control.clear_webhooks()
        processed = Processor(Inbox(tmp_path / "inbox.sqlite"), target.profile).drain()
        assert processed.failed == 0 and processed.processed > 0
        for connection in sandbox.connections:
            assert contents(target, connection) == truth_of(sandbox, connection)
