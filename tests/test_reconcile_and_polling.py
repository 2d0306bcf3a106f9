"""The safety nets: reconcile loads what the warehouse lost; polling syncs quiet connections."""

import duckdb

from makini_sandbox import Sandbox
from makini_sync.destinations.profiles import load_profile
from makini_sync.scheduling.reconcile import reconcile
from makini_sync.webhooks.events import Lifecycle
from makini_sync.scheduling.polling import PollingFallback
from tests.sync_support import FAST_RETRIES, assert_exact, sync

SIZES = {"purchase-orders": 300, "work-orders": 50, "assets": 40, "inventory-items": 50, "vendors": 30}


def test_reconcile_backfills_rows_the_warehouse_lost(isolated_dlt, monkeypatch):
    db = isolated_dlt / "w.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(db))
    with Sandbox(seed=13, sizes=SIZES, connections=1, in_process=True) as sandbox:
        assert sync(db, sandbox).ok
        with duckdb.connect(str(db)) as con:  # rows lost behind the bookmark's back
            con.execute("DELETE FROM makini.vendors WHERE id IN (SELECT id FROM makini.vendors LIMIT 7)")
        assert sync(db, sandbox).tables["vendors"].loaded == 0  # an incremental sync cannot see the gap
        results = {r.table: r for r in reconcile(load_profile("duckdb"), sandbox.base_url, sandbox.tokens,
                                                 retry_policy=FAST_RETRIES).results}
        assert (results["vendors"].missing, results["vendors"].loaded) == (7, 7)
        assert results["assets"].missing == results["assets"].loaded == 0
        assert_exact(db, sandbox)


def test_polling_syncs_quiet_connections_and_on_sync_completed(isolated_dlt, monkeypatch):
    db = isolated_dlt / "w.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(db))
    with Sandbox(seed=14, sizes=SIZES, connections=2, in_process=True) as sandbox:
        a, b = (c["id"] for c in sandbox.connections)
        polling = PollingFallback(load_profile("duckdb"), sandbox.base_url, sandbox.tokens, window=3600)
        polling.note(a)
        polling.note(b)
        assert polling.run_due() == []  # both heard from recently
        polling.on_lifecycle(Lifecycle("evt_1", "sync.completed", b, None, "completed", None))
        assert polling.run_due() == [b]
        polling.window = 0  # nothing heard within the window: every connection is polled
        assert sorted(polling.run_due()) == sorted([a, b])
        assert_exact(db, sandbox)


def test_polling_keeps_the_completeness_bound(isolated_dlt, monkeypatch):
    """A change Makini publishes late, older than what polling already loaded, is caught
    by the next poll after Makini's sync.completed."""
    db = isolated_dlt / "w.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(db))
    with Sandbox(seed=15, sizes=SIZES, connections=1, in_process=True) as sandbox:
        (connection,) = (c["id"] for c in sandbox.connections)
        polling = PollingFallback(load_profile("duckdb"), sandbox.base_url, sandbox.tokens, window=0)
        assert polling.run_due() == [connection]
        x, y = sorted(sandbox.control.truth(connection, "vendors", detail=True)["records"])[:2]
        sandbox.control.mutate(connection, "vendors", ids=[x], update=1.0, hold=True)
        sandbox.control.advance_clock(5)
        sandbox.control.mutate(connection, "vendors", ids=[y], update=1.0)
        sandbox.control.advance_clock(5)
        assert polling.run_due() == [connection]  # loads Y; X is not visible yet
        sandbox.control.makini_sync(connection)
        polling.on_lifecycle(Lifecycle("evt_2", "sync.completed", connection, None, "completed", None))
        assert polling.run_due() == [connection]
        assert_exact(db, sandbox)
