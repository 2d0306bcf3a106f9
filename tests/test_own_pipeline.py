"""makini_source in a dlt pipeline of the user's own (makini_sync/run/own_pipeline.py):
the same guarantees as the sync, where a plain ``pipeline.run`` lacks them."""

from __future__ import annotations

import dlt
import duckdb
import pytest

from makini_sandbox import Sandbox
from makini_sync.run.own_pipeline import sync_in_pipeline
from sources.makini import makini_source
from sources.makini.options import SourceOptions
from tests.sync_support import FAST_RETRIES, assert_exact, line_counts

SIZES = {"purchase-orders": 120, "work-orders": 10, "assets": 10, "inventory-items": 10, "vendors": 10}


def user_pipeline(name: str, db_path) -> dlt.Pipeline:
    return dlt.pipeline(name, destination=dlt.destinations.duckdb(str(db_path)), dataset_name="makini")


@pytest.mark.parametrize("shape", ["default", "drift"])
def test_own_pipeline_keeps_line_items_exact_where_a_plain_run_does_not(shape, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    own_db, plain_db = tmp_path / "own.duckdb", tmp_path / "plain.duckdb"
    with Sandbox(seed=3, sizes=SIZES, connections=1, shapes=[shape], in_process=True,
                 rate_limit_per_minute=10**6) as sandbox:
        settings = dict(base_url=sandbox.base_url, api_token=sandbox.tokens, retry_policy=FAST_RETRIES)
        own, plain = user_pipeline("own", own_db), user_pipeline("plain", plain_db)
        for _ in range(2):  # a first sync, then one after orders changed their lines
            result = sync_in_pipeline(own, **settings)
            assert result.ok, result.report.failures
            plain.run(makini_source(sandbox.base_url, sandbox.tokens, options=SourceOptions(retry_policy=FAST_RETRIES)))
            sandbox.control.mutate(sandbox.connections[0]["id"], "purchase-orders", update=0.5, seed=5)
        assert sync_in_pipeline(own, **settings).ok
        plain.run(makini_source(sandbox.base_url, sandbox.tokens, options=SourceOptions(retry_policy=FAST_RETRIES)))

        assert_exact(own_db, sandbox)  # orders and their line counts equal the API's
        connection = sandbox.connections[0]["id"]
        truth = sandbox.control.truth(connection, "purchase-orders", detail=True)["records"]
        expected = {rid: rec["line_count"] for rid, rec in truth.items() if rec["line_count"]}
        assert line_counts(own_db, connection) == expected
        # the contrast that shows the test can fail: a plain run keeps dropped lines
        assert line_counts(plain_db, connection) != expected
    with duckdb.connect(str(own_db), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM makini.purchase_orders").fetchone()[0] == len(truth)
