"""Reconcile finds missing, stale and ghost rows by (id, updated_at) sets, repairs
them, and deletes nothing on the evidence of a walk that did not finish."""

from __future__ import annotations

import pytest

from makini_sandbox import Sandbox
from makini_sync.destinations.profiles import make_pipeline
from makini_sync.scheduling.reconcile import RUNS_TABLE, reconcile, render_run
from sources.makini.client import RetryPolicy
from sources.makini.settings import ENTITIES
from tests.destination_targets import destination_target
from tests.sync_support import FAST_RETRIES
from makini_sync.run.sync import run_sync

SIZES = {"purchase-orders": 1200, "work-orders": 60, "assets": 50, "inventory-items": 50, "vendors": 240}


def _sync(target, sandbox, entities=None):
    result = run_sync(target.profile, base_url=sandbox.base_url, api_token=sandbox.tokens, retry_policy=FAST_RETRIES,
                      entities=entities)
    assert result.ok, result.report.failures
    return result


def _sql(target, template: str, **tables) -> None:
    pipeline = make_pipeline(target.profile, "makini_sync")
    with pipeline.sql_client() as client:
        names = {k: client.make_qualified_table_name(v) for k, v in tables.items()}
        client.execute_sql(template.format(**names))


def _truth(sandbox, connection_id, entity):
    return {rid: r["updated_at"] for rid, r in
            sandbox.control.truth(connection_id, entity.slug, detail=True)["records"].items()}


def _assert_equal_to_truth(target, sandbox, connection_id):
    for entity in ENTITIES.values():
        assert target.versions(entity.table, connection_id) == _truth(sandbox, connection_id, entity), entity.table
    lines = {rid: r["line_count"] for rid, r in
             sandbox.control.truth(connection_id, "purchase-orders", detail=True)["records"].items() if r["line_count"]}
    assert target.line_counts(connection_id) == lines


@pytest.mark.parametrize("destination", ["duckdb", "postgres"])
def test_reconcile_repairs_ghosts_missing_and_stale_rows(destination, isolated_dlt, monkeypatch, request):
    with destination_target(destination, isolated_dlt, monkeypatch, request) as target, \
            Sandbox(seed=21, sizes=SIZES, connections=1, in_process=True) as sandbox:
        connection_id = sandbox.connections[0]["id"]
        _sync(target, sandbox)
        vendors = sorted(target.versions("vendors", connection_id))
        # hard deletes whose webhooks were lost: ghosts, line items and all
        gone = sandbox.control.mutate(connection_id, "purchase-orders", hard_delete=0.01, seed=4)["hard_deleted"]
        # a ghost and a missing row together: the vendor counts stay equal
        ghost_vendor = sandbox.control.mutate(connection_id, "vendors", ids=[vendors[0]], hard_delete=1.0)
        assert ghost_vendor["hard_deleted"] == [vendors[0]]
        _sql(target, "DELETE FROM {v} WHERE id IN ('%s')" % vendors[1], v="vendors")
        # stale copies, made directly in the warehouse
        stale = vendors[2:5]
        _sql(target, "UPDATE {v} SET updated_at = updated_at - INTERVAL '3 days', name = 'stale' WHERE id IN (%s)"
             % ",".join(f"'{v}'" for v in stale), v="vendors")
        assert len(target.versions("vendors", connection_id)) == len(_truth(sandbox, connection_id, ENTITIES["vendors"]))

        looked = reconcile(target.profile, sandbox.base_url, sandbox.tokens, retry_policy=FAST_RETRIES, dry_run=True)
        found = {r.table: r for r in looked.results}
        assert (found["vendors"].missing, found["vendors"].stale, found["vendors"].ghosts) == (1, 3, 1)
        assert found["purchase_orders"].ghosts == len(gone) and found["purchase_orders"].deleted == 0
        assert found["assets"].missing == found["assets"].stale == found["assets"].ghosts == 0
        assert len(target.versions("vendors", connection_id)) == len(vendors) - 1  # the dry run changed nothing
        assert set(gone) <= set(target.versions("purchase_orders", connection_id))

        repaired = reconcile(target.profile, sandbox.base_url, sandbox.tokens, retry_policy=FAST_RETRIES)
        assert repaired.ok, render_run(repaired)
        done = {r.table: r for r in repaired.results}
        assert (done["vendors"].missing, done["vendors"].stale, done["vendors"].ghosts) == (1, 3, 1)
        assert done["vendors"].loaded == 4 and done["vendors"].deleted == 1
        assert done["purchase_orders"].deleted == len(gone) and done["purchase_orders"].loaded == 0
        _assert_equal_to_truth(target, sandbox, connection_id)
        assert "missing" in render_run(repaired) and "fetched" in render_run(repaired)

        again = reconcile(target.profile, sandbox.base_url, sandbox.tokens, retry_policy=FAST_RETRIES)
        assert again.ok and all(r.missing == r.stale == r.ghosts == r.loaded == r.deleted == 0 for r in again.results)
        runs = target.query(RUNS_TABLE, ["run_id", "dry_run", "table_name", "ghosts"],
                            connection_id)
        assert {r[0] for r in runs} == {looked.run_id, repaired.run_id, again.run_id}
        assert {(r[1], r[3]) for r in runs if r[2] == "vendors"} == {(True, 1), (False, 1), (False, 0)}


@pytest.mark.parametrize("destination", ["duckdb", "postgres"])
def test_a_walk_that_fails_part_way_deletes_nothing(destination, isolated_dlt, monkeypatch, request):
    with destination_target(destination, isolated_dlt, monkeypatch, request) as target, \
            Sandbox(seed=22, sizes=SIZES, connections=1, in_process=True) as sandbox:
        connection_id = sandbox.connections[0]["id"]
        _sync(target, sandbox)
        gone = sandbox.control.mutate(connection_id, "purchase-orders", hard_delete=0.01, seed=4)["hard_deleted"]
        before = target.versions("purchase_orders", connection_id)
        # the connection, the run's own connection lookup, the status, one page: then an outage
        sandbox.control.set_faults(outage_after=4)
        brief = RetryPolicy(budget_seconds=0.3, base_backoff=0.01, max_backoff=0.02)
        run = reconcile(target.profile, sandbox.base_url, sandbox.tokens, entities=["purchase_orders"],
                        retry_policy=brief)
        sandbox.control.clear_faults()
        result = {r.table: r for r in run.results}["purchase_orders"]
        assert not run.ok and not result.complete and result.error
        assert 0 < result.fetched_records < SIZES["purchase-orders"]
        assert result.deleted == 0
        assert target.versions("purchase_orders", connection_id) == before  # every ghost is still there
        assert set(gone) <= set(before)
        assert "INCOMPLETE" in render_run(run)

        finished = reconcile(target.profile, sandbox.base_url, sandbox.tokens, entities=["purchase_orders"],
                             retry_policy=FAST_RETRIES)
        assert finished.ok and {r.table: r for r in finished.results}["purchase_orders"].deleted == len(gone)
        assert target.versions("purchase_orders", connection_id) == _truth(
            sandbox, connection_id, ENTITIES["purchase_orders"])


def test_the_command_prints_what_it_found_and_exits_non_zero_when_a_walk_failed(
        isolated_dlt, monkeypatch, capsys):
    from pipelines.reconcile import main

    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(isolated_dlt / "w.duckdb"))
    with Sandbox(seed=23, sizes=SIZES, connections=1, in_process=True) as sandbox:
        monkeypatch.setenv("SOURCES__MAKINI__BASE_URL", sandbox.base_url)
        monkeypatch.setenv("SOURCES__MAKINI__API_TOKEN", sandbox.tokens[0])
        monkeypatch.setenv("RUNTIME__LOG_LEVEL", "WARNING")
        assert main(["--destination", "duckdb", "--entities", "vendors"]) == 0
        out = capsys.readouterr().out
        assert "vendors" in out and "missing" in out
        sandbox.control.set_connection_status(sandbox.connections[0]["id"], "reauthorization_required")
        assert main(["--destination", "duckdb", "--entities", "vendors", "--dry-run"]) == 1
        assert "INCOMPLETE" in capsys.readouterr().out


def test_a_dry_run_finishes_while_records_change(isolated_dlt, monkeypatch, request):
    from tests.sync_support import mutating

    with destination_target("duckdb", isolated_dlt, monkeypatch, request) as target, \
            Sandbox(seed=24, sizes=SIZES, connections=1, in_process=True) as sandbox:
        _sync(target, sandbox)
        sandbox.control.requests_served(reset=True)
        with mutating(sandbox, interval=0.005):
            run = reconcile(target.profile, sandbox.base_url, sandbox.tokens, entities=["purchase_orders", "vendors"],
                            retry_policy=FAST_RETRIES, dry_run=True)
        assert run.ok, render_run(run)
        served = sandbox.control.requests_served()["by_connection"][sandbox.connections[0]["id"]]
        # one walk each (a few pages more for records that moved to the end), not a walk per change
        assert served["purchase-orders"] <= 6 and served["vendors"] <= 8, served
        assert all(r.fetched_records >= SIZES[ENTITIES[r.table].slug] - 50 for r in run.results)


def test_pages_kept_from_an_earlier_run_are_no_evidence_for_deletes(isolated_dlt, monkeypatch, request):
    """A reconcile that failed part way leaves its pages spooled; a record published
    later inside those pages and stored by the webhook path must not be taken for a ghost."""
    from makini_sync.integrity.deltas import Upsert, load_deltas

    with destination_target("duckdb", isolated_dlt, monkeypatch, request) as target, \
            Sandbox(seed=25, sizes=SIZES, connections=1, in_process=True) as sandbox:
        connection_id = sandbox.connections[0]["id"]
        # another writer filled the warehouse: this pipeline has no state for the walks yet
        assert run_sync(target.profile, base_url=sandbox.base_url, api_token=sandbox.tokens,
                        retry_policy=FAST_RETRIES, pipeline_name="another_writer").ok
        sandbox.control.set_faults(outage_after=5)
        brief = RetryPolicy(budget_seconds=0.3, base_backoff=0.01, max_backoff=0.02)
        failed = reconcile(target.profile, sandbox.base_url, sandbox.tokens, entities=["purchase_orders"],
                           retry_policy=brief)
        sandbox.control.clear_faults()
        assert not failed.ok
        oldest = sandbox.control.records(connection_id, "purchase-orders")[0]
        late = dict(oldest, id="po_published_late", order_number="LATE-1")  # as old as the first page
        sandbox.control.put_records(connection_id, "purchase-orders", [late])
        load_deltas(target.profile, [Upsert(connection_id, ENTITIES["purchase_orders"], late)])
        assert "po_published_late" in target.versions("purchase_orders", connection_id)

        again = reconcile(target.profile, sandbox.base_url, sandbox.tokens, entities=["purchase_orders"],
                          retry_policy=FAST_RETRIES)
        assert "po_published_late" in target.versions("purchase_orders", connection_id), render_run(again)
        final = reconcile(target.profile, sandbox.base_url, sandbox.tokens, entities=["purchase_orders"],
                          retry_policy=FAST_RETRIES)
        assert final.ok
        assert target.versions("purchase_orders", connection_id) == _truth(
            sandbox, connection_id, ENTITIES["purchase_orders"])


def test_postgres_tables_get_an_index_on_their_merge_keys(isolated_dlt, monkeypatch, request):
    """dlt makes no index for a compound key on PostgreSQL; every fence lookup, merge
    and tombstone sweep would scan the table."""
    with destination_target("postgres", isolated_dlt, monkeypatch, request) as target, \
            Sandbox(seed=26, sizes=SIZES, connections=1, in_process=True) as sandbox:
        _sync(target, sandbox)
        pipeline = make_pipeline(target.profile, "makini_sync")
        with pipeline.sql_client() as client:
            rows = client.execute_sql(
                "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = %s", client.dataset_name)
        indexed = {table: definition for table, definition in rows}
        assert "(connection_id, id)" in indexed["purchase_orders"]
        assert "(connection_id, purchase_order_id)" in indexed["purchase_orders__line_items"]


def test_reconcile_repairs_a_document_store(isolated_dlt, monkeypatch, request):
    with destination_target("mongodb", isolated_dlt, monkeypatch, request) as target, \
            Sandbox(seed=27, sizes=SIZES, connections=1, in_process=True) as sandbox:
        connection_id = sandbox.connections[0]["id"]
        _sync(target, sandbox, entities=["vendors"])
        gone = sandbox.control.mutate(connection_id, "vendors", hard_delete=0.02, seed=2)["hard_deleted"]
        run = reconcile(target.profile, sandbox.base_url, sandbox.tokens, entities=["vendors"],
                        retry_policy=FAST_RETRIES)
        assert run.ok and {r.table: r for r in run.results}["vendors"].deleted == len(gone) > 0
        assert target.versions("vendors", connection_id) == _truth(sandbox, connection_id, ENTITIES["vendors"])


def test_the_document_store_appends_the_run_records():
    from makini_sync.destinations.mongodb import RECORD_TABLES

    assert RUNS_TABLE in RECORD_TABLES
