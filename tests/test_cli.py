"""The ``makini-sync`` console command: a subcommand per entry point."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import duckdb

CLI = Path(sys.executable).parent / "makini-sync"


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=240)


def test_lists_its_commands_and_refuses_an_unknown_one():
    listed = run("--help")
    assert listed.returncode == 0
    for name in ("sync", "webhooks", "reconcile", "sandbox"):
        assert f"  {name} " in listed.stdout
    unknown = run("sink")
    assert unknown.returncode == 2
    assert "unknown command 'sink'" in unknown.stderr and "sync, webhooks, reconcile, sandbox" in unknown.stderr


def words(text: str) -> set[str]:
    """The whole words and options of a help text (``--dry-run``, ``serve``, ``{serve,process}`` -> each)."""
    return set(re.findall(r"(?<![\w-])(?:--)?[A-Za-z][\w-]*", text))


def test_each_command_takes_its_entry_points_arguments():
    for name, options in (("sync", {"--destination"}), ("reconcile", {"--dry-run"}),
                          ("webhooks", {"serve", "process", "dlq", "reconcile"}), ("sandbox", {"--port"})):
        shown = run(name, "--help")
        assert shown.returncode == 0, shown.stderr
        assert options <= words(shown.stdout), (name, options - words(shown.stdout), shown.stdout[:500])


def test_the_documented_examples_are_real_commands():
    """Every example in the command's doc string parses: each word before the first option
    is a real (sub)command, and each option is one that (sub)command lists in its --help."""
    from pipelines import cli

    examples = [line.split() for line in (cli.__doc__ or "").splitlines() if line.strip().startswith("makini-sync ")]
    assert len(examples) >= len(cli.COMMANDS), cli.__doc__
    assert {e[1] for e in examples} == set(cli.COMMANDS)
    for example in examples:
        command = [w for w in itertools.takewhile(lambda w: not w.startswith("-"), example[1:])]
        options = {w.split("=")[0] for w in example[1:] if w.startswith("--")}
        shown = run(*command, "--help")
        assert shown.returncode == 0, (" ".join(example), shown.stderr[-500:])
        assert options <= words(shown.stdout), (" ".join(example), options - words(shown.stdout))


def test_sync_runs_on_the_sandbox(tmp_path):
    import os

    env = {**os.environ, "DLT_DATA_DIR": str(tmp_path / "dlt"), "RUNTIME__LOG_LEVEL": "WARNING",
           "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "cli.duckdb")}
    synced = run("sync", "--sandbox", "--sandbox-size", "50", cwd=tmp_path, env=env)
    assert synced.returncode == 0, synced.stderr[-2000:]
    with duckdb.connect(str(tmp_path / "cli.duckdb"), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM makini.purchase_orders").fetchone()[0] == 100  # two connections


def test_sync_takes_its_conversion_processes_and_refuses_a_negative_count():
    from pipelines.sync import parse_args

    assert parse_args(["--conversion-processes", "0"]).conversion_processes == 0
    assert parse_args(["--conversion-processes", "2"]).conversion_processes == 2
    refused = run("sync", "--conversion-processes", "-1")
    assert refused.returncode == 2
    assert "--conversion-processes" in refused.stderr and "'-1' is not a whole number of at least 0" in refused.stderr
