"""The shipped DuckDB settings hold on data they were not tuned on: a full and an
incremental sync of 100k orders, half of them from a drifting deployment, with no
load job retried for running out of memory."""

import logging

import pytest

from makini_sandbox import Sandbox
from tests.sync_support import assert_exact, sync

SIZES = {"purchase-orders": 50_000, "work-orders": 5_000, "assets": 2_000, "inventory-items": 5_000, "vendors": 500}


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_full_and_incremental_syncs_of_100k_orders_of_several_shapes_never_run_out_of_memory(isolated_dlt):
    db = isolated_dlt / "w.duckdb"
    collect = Collect()
    loggers = [logging.getLogger("dlt"), logging.getLogger("makini_sync.load_detail")]
    for logger in loggers:
        logger.addHandler(collect)
    try:
        with Sandbox(seed=5, sizes=SIZES, connections=2, shapes=["default", "drift"]) as sandbox:
            full = sync(db, sandbox)
            assert full.ok, full.report.failures
            assert full.tables["purchase_orders"].loaded == 100_000
            for connection in sandbox.connections:
                for entity in ("purchase-orders", "work-orders", "inventory-items"):
                    sandbox.control.mutate(connection["id"], entity, update=0.01, seed=4)
            incremental = sync(db, sandbox)
            assert incremental.ok, incremental.report.failures
            assert 0 < incremental.tables["purchase_orders"].loaded <= 1_100
            assert_exact(db, sandbox)
    finally:
        for logger in loggers:
            logger.removeHandler(collect)
    retried = [m for m in collect.messages if "out of memory" in m.lower()]
    assert not retried, f"{len(retried)} load job(s) ran out of memory: {retried[0][:300]}"
