"""A sync runs as several bounded loads; walks resume across them, even after the cursor expires."""

from makini_sync.destinations.profiles import make_pipeline
from sources.makini import makini_source
from sources.makini.options import SourceOptions
from sources.makini.walk_outcomes import WalkOutcomes
from makini_sync.workers.naming import sync_pipeline_name
from tests.sync_support import FAST_RETRIES, assert_exact, duckdb_profile, mutating, sync

SYNC_PIPELINE = sync_pipeline_name("duckdb", "makini")  # the pipeline sync() runs in


def test_many_small_loads_end_exact_under_mutation(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    with mutating(fresh_sandbox, interval=0.05):
        first = sync(db, fresh_sandbox, rows_per_load=700)
    assert first.ok, first.report.failures
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        packages = con.execute("SELECT COUNT(*) FROM makini._dlt_loads").fetchone()[0]
    assert packages >= 5, f"expected several loads, got {packages}"
    assert sync(db, fresh_sandbox, rows_per_load=700).ok
    assert_exact(db, fresh_sandbox)


def test_expired_cursor_restarts_from_the_walks_bookmark(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    profile = duckdb_profile(db)
    pipeline = make_pipeline(profile, SYNC_PIPELINE)
    outcomes = WalkOutcomes()
    # one bounded load, as if the run had been stopped after it
    source = makini_source(base_url=fresh_sandbox.base_url, api_token=fresh_sandbox.tokens,
                           entities=["purchase_orders"],
                           options=SourceOptions(outcomes=outcomes, retry_policy=FAST_RETRIES, max_rows_per_load=800))
    pipeline.extract(source, loader_file_format="parquet")
    pipeline.normalize()
    pipeline.load()
    assert outcomes.unfinished, "the first load should have left walks to resume"
    walk = pipeline.state["sources"]["makini"]["resources"]["purchase_orders"]["bookmarks"]
    assert any("walk" in s for s in walk.values())
    fresh_sandbox.control.advance_clock(25 * 3600)  # saved cursors are now past 24 h
    served_before = fresh_sandbox.control.requests_served()["by_status"].get("400", 0)
    result = sync(db, fresh_sandbox, entities=["purchase_orders"])
    assert result.ok, result.report.failures
    assert fresh_sandbox.control.requests_served()["by_status"].get("400", 0) > served_before
    assert_exact(db, fresh_sandbox, entities=["purchase_orders"])


def test_a_kill_between_normalize_commit_and_cleanup_is_mended(fresh_sandbox, tmp_path):
    """dlt's normalize renames a package into the load storage, then deletes the
    extracted copy; a kill in between leaves both. The next run must load it."""
    import shutil
    from pathlib import Path

    db = tmp_path / "w.duckdb"
    pipeline = make_pipeline(duckdb_profile(db), SYNC_PIPELINE)
    source = makini_source(base_url=fresh_sandbox.base_url, api_token=fresh_sandbox.tokens,
                           entities=["vendors"], options=SourceOptions(retry_policy=FAST_RETRIES))
    pipeline.extract(source, loader_file_format="parquet")
    (load_id,) = pipeline.list_extracted_load_packages()
    extracted = Path(pipeline.working_dir) / "normalize" / "extracted" / load_id
    kept = tmp_path / "extracted_copy"
    shutil.copytree(extracted, kept)
    pipeline.normalize()
    shutil.copytree(kept, extracted)  # the state a kill between rename and delete leaves
    assert load_id in pipeline.list_extracted_load_packages() and load_id in pipeline.list_normalized_load_packages()

    result = sync(db, fresh_sandbox, entities=["vendors"])
    assert result.ok, result.report.failures
    assert_exact(db, fresh_sandbox, entities=["vendors"])


def test_a_kill_while_dlt_creates_its_load_storage_is_mended(fresh_sandbox, tmp_path):
    """dlt's first normalize creates the load storage: the folder and its version
    file, then ``new``, ``normalized`` and ``loaded``. A kill in between (seen in
    the crash harness in CI) leaves a storage without ``normalized``, and listing
    it raised FileNotFoundError on every rerun. The rerun must load."""
    from pathlib import Path

    from dlt.common.storages.load_storage import LoadStorage

    db = tmp_path / "w.duckdb"
    pipeline = make_pipeline(duckdb_profile(db), SYNC_PIPELINE)
    source = makini_source(base_url=fresh_sandbox.base_url, api_token=fresh_sandbox.tokens,
                           entities=["vendors"], options=SourceOptions(retry_policy=FAST_RETRIES))
    pipeline.extract(source, loader_file_format="parquet")
    load = Path(pipeline.working_dir) / "load"
    (load / "new").mkdir(parents=True)  # what dlt made before the kill
    (load / ".version").write_text(LoadStorage.STORAGE_VERSION)
    assert not (load / "normalized").exists()

    result = sync(db, fresh_sandbox, entities=["vendors"])
    assert result.ok, result.report.failures
    assert_exact(db, fresh_sandbox, entities=["vendors"])


def test_a_package_loads_while_the_next_is_extracted(fresh_sandbox, tmp_path, monkeypatch):
    """The extraction goes on during a load: with each load held back 0.3 s,
    pages are still fetched meanwhile, and the run ends exact."""
    import time

    from makini_sync.run.background_load import BackgroundLoad

    fetched_during_loads = []
    run_load = BackgroundLoad._run

    def slow_load(self):
        before = fresh_sandbox.control.requests_served()["total"]
        time.sleep(0.3)
        fetched_during_loads.append(fresh_sandbox.control.requests_served()["total"] - before)
        run_load(self)

    monkeypatch.setattr(BackgroundLoad, "_run", slow_load)
    db = tmp_path / "w.duckdb"
    result = sync(db, fresh_sandbox, rows_per_load=700)
    assert result.ok, result.report.failures
    assert fetched_during_loads and max(fetched_during_loads) > 0, fetched_during_loads
    assert_exact(db, fresh_sandbox)


def test_loads_beside_extraction_keep_the_newest_cursors(fresh_sandbox, tmp_path):
    """After a run of many loads, each beside the next extraction, the cursors
    kept are the newest: the rerun of an unchanged source asks for one page
    per walk, not the walks again."""
    db = tmp_path / "w.duckdb"
    assert sync(db, fresh_sandbox, rows_per_load=700).ok
    fresh_sandbox.control.requests_served(reset=True)
    again = sync(db, fresh_sandbox, rows_per_load=700)
    assert again.ok, again.report.failures
    served = fresh_sandbox.control.requests_served()["by_connection"]
    pages = {(connection, path): n for connection, paths in served.items() for path, n in paths.items()
             if path not in ("connection", "sync-status")}  # the status checks each run makes
    walks = len(fresh_sandbox.tokens) * 5
    assert len(pages) == walks and set(pages.values()) == {1}, pages
    assert sum(stats.loaded for stats in again.tables.values()) <= walks  # the inclusive boundary at most
