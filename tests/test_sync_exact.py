"""A sync ends equal to the sandbox truth whatever the API does during the run."""

from makini_sync.workers.naming import staging_layout
from tests.sync_support import assert_exact, mutating, sync


def test_full_sync_is_exact(fresh_sandbox, tmp_path):
    result = sync(tmp_path / "w.duckdb", fresh_sandbox)
    assert result.ok, result.report.failures
    assert result.tables["purchase_orders"].loaded == 2 * 1200
    assert result.tables["purchase_orders__line_items"].loaded > 2 * 1200
    assert_exact(tmp_path / "w.duckdb", fresh_sandbox)


def test_exact_under_429_storms_503s_cut_bodies_and_mutation_while_paging(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    fresh_sandbox.control.set_faults(seed=3, rate_429=0.3, rate_503=0.2, rate_500=0.05, drop_rate=0.05, cut_rate=0.05,
                                     retry_after=0)
    with mutating(fresh_sandbox) as mutations:
        first = sync(db, fresh_sandbox)
    assert first.ok, first.report.failures
    assert mutations, "the sandbox was not mutated while the sync paged"
    served = fresh_sandbox.control.requests_served()
    assert served["by_status"].get("429") and served["by_status"].get("503"), served["by_status"]
    assert served["by_status"].get("cut"), served["by_status"]  # bodies stopped halfway were fetched again
    # what changed while the first run paged is caught by the next run
    second = sync(db, fresh_sandbox)
    assert second.ok, second.report.failures
    assert_exact(db, fresh_sandbox)


def test_rerun_never_duplicates(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    sync(db, fresh_sandbox, entities=["vendors"])
    sync(db, fresh_sandbox, entities=["vendors"], full_refresh=True)
    sync(db, fresh_sandbox, entities=["vendors"])
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        total, distinct = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT (connection_id, id)) FROM makini.vendors"
        ).fetchone()
    assert total == distinct == 2 * 250


def test_a_finished_sync_leaves_no_rows_in_staging(fresh_sandbox, tmp_path):
    """dlt's staging copies are truncated after each load, so they are not
    written into the file at close (a full sync's checkpoint 0.5 s, not 1 s)."""
    db = tmp_path / "w.duckdb"
    result = sync(db, fresh_sandbox, entities=["purchase-orders", "vendors"])
    assert result.ok, result.report.failures
    import duckdb

    staging = staging_layout(result.pipeline_name) % "makini"  # the pipeline's own staging dataset
    with duckdb.connect(str(db), read_only=True) as con:
        staged = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [staging]).fetchall()
        assert {name for (name,) in staged} >= {"purchase_orders", "purchase_orders__line_items", "vendors"}
        counts = {name: con.execute(f'SELECT COUNT(*) FROM {staging}."{name}"').fetchone()[0]
                  for (name,) in staged if not name.startswith("_dlt")}
    assert set(counts.values()) == {0}, counts
