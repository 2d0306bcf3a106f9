"""A load package the destination refuses is never a dead end: the failure names its
cause, and the next run sets the package aside, fetches its data again and syncs."""

import logging

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from makini_sandbox import Sandbox
from makini_sync.run.load_errors import failure_cause
from makini_sync.run.sync import run_sync
from tests.destination_targets import destination_target
from tests.sync_support import FAST_RETRIES

SIZES = {"purchase-orders": 20, "work-orders": 10, "assets": 10, "inventory-items": 10, "vendors": 120}


@pytest.fixture
def mysql(isolated_dlt, monkeypatch, request):
    with destination_target("mysql", isolated_dlt, monkeypatch, request) as target:
        yield target


def test_a_refused_package_is_set_aside_by_the_next_run_and_its_data_fetched_again(mysql, isolated_dlt, caplog):
    with Sandbox(seed=4, sizes=SIZES, connections=1, in_process=True) as sandbox:
        connection_id = sandbox.connections[0]["id"]
        first = run_sync(mysql.profile, base_url=sandbox.base_url, api_token=sandbox.tokens,
                         entities=["vendors"], retry_policy=FAST_RETRIES)
        assert first.ok, first.report.failures
        # a record the destination refuses (its id is longer than the key column), and an update beside it
        vendor = sandbox.control.records(connection_id, "vendors")[0]
        refused = dict(vendor, id="v" * 300, updated_at="2030-01-01T00:00:00.000Z")
        sandbox.control.put_records(connection_id, "vendors", [refused])
        updated = sandbox.control.mutate(connection_id, "vendors", update=0.1, seed=3)["updated"]
        dlt_logger = logging.getLogger("dlt")  # dlt's own logger does not propagate
        dlt_logger.addHandler(caplog.handler)
        try:
            with pytest.raises(PipelineStepFailed) as failed:
                run_sync(mysql.profile, base_url=sandbox.base_url, api_token=sandbox.tokens,
                         entities=["vendors"], retry_policy=FAST_RETRIES)
        finally:
            dlt_logger.removeHandler(caplog.handler)
        cause = failure_cause(failed.value)
        assert "vendors" in cause and "Data too long" in cause, cause  # the database's own words
        assert "\n" not in cause
        retried = [r for r in caplog.records if r.name == "dlt" and r.levelno >= logging.WARNING]
        assert retried and any("Data too long" in r.getMessage() for r in retried)
        assert all("\n" not in r.getMessage() and not r.exc_info for r in retried)  # one line each, no traceback

        sandbox.control.mutate(connection_id, "vendors", ids=[refused["id"]], hard_delete=1.0)
        third = run_sync(mysql.profile, base_url=sandbox.base_url, api_token=sandbox.tokens,
                         entities=["vendors"], retry_policy=FAST_RETRIES)
        assert third.ok, third.report.failures
        (aside,) = third.report.set_aside
        assert "Data too long" in aside.cause and aside.kept_at.exists()
        truth = sandbox.control.truth(connection_id, "vendors", detail=True)["records"]
        assert mysql.versions("vendors", connection_id) == {rid: r["updated_at"] for rid, r in truth.items()}
        assert updated and third.tables["vendors"].loaded >= len(updated)  # the set-aside data, fetched again
        fourth = run_sync(mysql.profile, base_url=sandbox.base_url, api_token=sandbox.tokens,
                          entities=["vendors"], retry_policy=FAST_RETRIES)
        assert fourth.ok and not fourth.report.set_aside and fourth.tables["vendors"].loaded == 0
