"""Bookmarks taken over from other pipelines of the dataset: the first run after the
upgrade from the single ``makini_sync`` pipeline, and connections that move to
another shard, resume incrementally (one page of changes per walk)."""

import shutil

import pytest

from makini_sync.workers.selection import Shard, WorkerSelection
from sources.makini.settings import ENTITIES
from tests.fleet_support import list_pages
from tests.sync_support import assert_exact, sync


def change_one_percent(sandbox, seed):
    for connection in sandbox.connections:
        for entity in ENTITIES.values():
            sandbox.control.mutate(connection["id"], entity.slug, update=0.01, seed=seed)


def served_pages(sandbox):
    return list_pages(sandbox.control.requests_served(), [c["id"] for c in sandbox.connections])


def test_the_first_run_after_the_upgrade_adopts_the_old_pipelines_bookmarks(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    assert sync(db, fresh_sandbox, pipeline_name="makini_sync").ok  # as every release before named it
    shutil.rmtree(tmp_path / "dlt")  # and a new container, for good measure: only the destination remembers
    change_one_percent(fresh_sandbox, seed=5)
    fresh_sandbox.control.requests_served(reset=True)
    result = sync(db, fresh_sandbox)
    assert result.ok, result.report.failures
    walks = len(fresh_sandbox.connections) * len(ENTITIES)
    assert result.adopted == walks
    assert served_pages(fresh_sandbox) == walks  # one page of changes per walk, no full walk
    assert_exact(db, fresh_sandbox)
    assert sync(db, fresh_sandbox).adopted == 0  # its own bookmarks from now on


def test_connections_that_move_to_another_shard_resume_incrementally(fresh_sandbox, tmp_path):
    db = tmp_path / "w.duckdb"
    for k in (1, 2):
        assert sync(db, fresh_sandbox, selection=WorkerSelection(Shard(k, 2))).ok
    change_one_percent(fresh_sandbox, seed=6)
    fresh_sandbox.control.requests_served(reset=True)
    regrouped = sync(db, fresh_sandbox, selection=WorkerSelection(Shard(1, 1)))  # the fleet now runs one worker
    assert regrouped.ok and regrouped.pipeline_name.endswith("shard_1_of_1")
    walks = len(fresh_sandbox.connections) * len(ENTITIES)
    assert regrouped.adopted == walks
    assert served_pages(fresh_sandbox) == walks
    assert_exact(db, fresh_sandbox)


def test_a_full_refresh_never_adopts_another_pipelines_bookmark(fresh_sandbox, tmp_path):
    """After its rows are deleted, a bookmark from another pipeline would skip them for good."""
    db = tmp_path / "w.duckdb"
    assert sync(db, fresh_sandbox, pipeline_name="makini_sync").ok
    refreshed = sync(db, fresh_sandbox, full_refresh=True)
    assert refreshed.ok and refreshed.adopted == 0
    assert refreshed.tables["purchase_orders"].loaded == 2 * 1200
    assert_exact(db, fresh_sandbox)


def _full_refresh_killed_after_its_deletes(db, sandbox, monkeypatch):
    from makini_sync.run.package_loop import PackageLoop

    def killed(self, only):
        raise KeyboardInterrupt("killed after the refresh deleted its rows")

    with monkeypatch.context() as patched:  # undoes this patch alone, not the fixtures' data dir
        patched.setattr(PackageLoop, "_extract", killed)
        with pytest.raises(KeyboardInterrupt):
            sync(db, sandbox, full_refresh=True)


def test_a_killed_full_refresh_then_a_wiped_disk_still_reloads_everything(fresh_sandbox, tmp_path, monkeypatch):
    db = tmp_path / "w.duckdb"
    assert sync(db, fresh_sandbox).ok
    _full_refresh_killed_after_its_deletes(db, fresh_sandbox, monkeypatch)
    shutil.rmtree(tmp_path / "dlt")  # a new container: only the destination remembers
    again = sync(db, fresh_sandbox)
    assert again.ok and again.tables["purchase_orders"].loaded == 2 * 1200
    assert_exact(db, fresh_sandbox)


def test_adoption_never_takes_a_bookmark_older_than_a_refresh_that_deleted_the_rows(
        fresh_sandbox, tmp_path, monkeypatch):
    db = tmp_path / "w.duckdb"
    assert sync(db, fresh_sandbox, pipeline_name="makini_sync").ok  # before the upgrade
    assert sync(db, fresh_sandbox).adopted  # the upgraded worker took those bookmarks over
    _full_refresh_killed_after_its_deletes(db, fresh_sandbox, monkeypatch)
    resharded = sync(db, fresh_sandbox, selection=WorkerSelection(Shard(1, 1)))  # a pipeline new to them all
    assert resharded.ok and resharded.adopted == 0  # the newest bookmark is the refresh's empty one
    assert_exact(db, fresh_sandbox)
