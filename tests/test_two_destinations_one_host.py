"""One host syncing two destinations from one dlt data dir: each keeps its own state.

Every run used to be the pipeline ``makini_sync``, so the bookmarks one
destination's run saved were the ones the other destination's next run
started from, and changes were lost silently on both.
"""

from makini_sandbox import Sandbox
from makini_sync.run.sync import run_sync
from tests.destination_targets import destination_target
from tests.fleet_support import assert_target_exact
from tests.sync_support import FAST_RETRIES, mutating

SIZES = {"purchase-orders": 600, "work-orders": 150, "assets": 150, "inventory-items": 150, "vendors": 150}


def _sync(target, sandbox):
    result = run_sync(target.profile, base_url=sandbox.base_url, api_token=sandbox.tokens, retry_policy=FAST_RETRIES)
    assert result.ok, result.report.failures
    return result


def test_two_destinations_alternating_from_one_data_dir_both_end_exact(isolated_dlt, monkeypatch, request):
    with destination_target("postgres", isolated_dlt, monkeypatch, request) as postgres, \
            destination_target("mysql", isolated_dlt, monkeypatch, request) as mysql, \
            Sandbox(seed=31, sizes=SIZES, connections=2, in_process=True) as sandbox:
        sandbox.control.set_faults(seed=5, slow_rate=0.3, slow_seconds=0.02)  # time for changes between pages
        names = set()
        for round_ in range(2):
            if round_:
                for connection in sandbox.connections:
                    for slug in ("purchase-orders", "work-orders", "assets", "inventory-items", "vendors"):
                        assert sandbox.control.mutate(connection["id"], slug, update=0.01, seed=round_)["updated"]
            with mutating(sandbox, interval=0.05, seed=100 * round_) as changes:
                names.add(_sync(postgres, sandbox).pipeline_name)
                names.add(_sync(mysql, sandbox).pipeline_name)
            assert changes, "nothing changed while the syncs paged"
            _sync(postgres, sandbox)  # what changed while they paged
            _sync(mysql, sandbox)
            assert_target_exact(postgres, sandbox)
            assert_target_exact(mysql, sandbox)
        assert len(names) == 2, names
