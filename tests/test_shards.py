"""--shard K/N: every connection in exactly one shard, and shards stable as the fleet grows."""

import secrets
import subprocess
import sys

import pytest

from makini_sync.workers.naming import staging_layout, sync_pipeline_name
from makini_sync.workers.selection import Shard, WorkerSelection, shard_of
from sources.makini.errors import ConfigurationError
from tests.fleet_support import REPO


def tokens(n, seed=0):
    return [f"tok_{seed}_{i}_{secrets.token_hex(8)}" for i in range(n)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_every_connection_lands_in_exactly_one_shard(count):
    fleet = tokens(200)
    picked = [WorkerSelection(Shard(k, count)).pick(fleet) for k in range(1, count + 1)]
    assert sorted(t for shard in picked for t in shard) == sorted(fleet)
    assert sum(len(s) for s in picked) == len(fleet)  # no token in two shards
    if count > 1:
        assert all(len(s) > 200 / count / 3 for s in picked), [len(s) for s in picked]  # roughly even


def test_a_connection_added_or_removed_moves_no_other():
    fleet = tokens(100)
    before = {k: WorkerSelection(Shard(k, 4)).pick(fleet) for k in range(1, 5)}
    added = tokens(20, seed=1)
    grown = fleet[:50] + added + fleet[50:]
    shrunk = fleet[10:]
    for k in range(1, 5):
        picked = WorkerSelection(Shard(k, 4)).pick(grown)
        assert [t for t in picked if t not in added] == before[k]
        assert WorkerSelection(Shard(k, 4)).pick(shrunk) == [t for t in before[k] if t in shrunk]


def test_a_shard_keeps_the_configured_order():
    fleet = tokens(30)
    mine = WorkerSelection(Shard(2, 3)).pick(fleet)
    assert mine == [t for t in fleet if t in set(mine)]


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0", ""])
def test_a_bad_shard_says_what_to_write(text):
    with pytest.raises(ConfigurationError, match="--shard"):
        Shard.parse(text)


def test_the_command_line_refuses_a_bad_shard_with_exit_code_2():
    done = subprocess.run([sys.executable, "-m", "pipelines.sync", "--shard", "5/4", "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "--shard 5/4" in done.stderr and "between 1 and N" in done.stderr


def test_a_named_worker_of_a_shard_keeps_both_in_its_name():
    assert WorkerSelection(Shard(2, 4), "plant_eu").label == "plant_eu_shard_2_of_4"
    assert WorkerSelection(Shard(1, 4), "plant_eu").label != WorkerSelection(Shard(2, 4), "plant_eu").label


def test_pipeline_names_keep_destinations_datasets_and_shards_apart():
    names = {sync_pipeline_name(p, d, s) for p in ("postgres", "mysql") for d in ("makini", "other")
             for s in ("all", Shard(1, 2).label, Shard(2, 2).label)}
    assert len(names) == 12
    assert sync_pipeline_name("postgres", "makini", Shard(2, 4).label) == "makini_sync__postgres__makini__shard_2_of_4"
    layouts = {staging_layout(n) for n in names}
    assert len(layouts) == 12 and all(len(layout % "makini") <= 64 for layout in layouts)
