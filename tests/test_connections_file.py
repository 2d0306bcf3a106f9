"""A fleet configured in a connections file: tokens from secrets, labels, per-connection
entities, rate budgets and field names; a bad entry fails before any request."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from makini_sandbox import Sandbox
from tests.sync_support import assert_exact

REPO = Path(__file__).resolve().parent.parent
SIZES = {"purchase-orders": 60, "work-orders": 20, "assets": 20, "inventory-items": 20, "vendors": 20}
V3 = '{ primary_key = "key", updated_at = "updatedAt", deleted_at = "deletedAt" }'


def run_file(tmp_path: Path, sandbox, text: str, tokens: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "connections.toml"
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__MAKINI__")}
    env.update({"SOURCES__MAKINI__BASE_URL": sandbox.base_url, "DLT_DATA_DIR": str(tmp_path / "dlt"),
                "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "w.duckdb"), "PYTHONPATH": str(REPO)})
    env.update({f"SOURCES__MAKINI__TOKENS__{name.upper()}": token for name, token in tokens.items()})
    return subprocess.run([sys.executable, "-m", "pipelines.sync", "--no-progress", "--connections", str(path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)


def test_a_fleet_from_a_connections_file_syncs_each_connection_as_configured(tmp_path):
    with Sandbox(seed=71, sizes=SIZES, connections=3, shapes=["default", "default", "v3"], in_process=True) as sandbox:
        (plain, vendors_only, v3) = sandbox.connections
        text = f"""
[defaults]
rate_limit = "600/min"

[connections.hamburg]
label = "Hamburg plant"

[connections.lyon]
entities = ["vendors"]
rate_limit = "100/5s"
token_secret = "lyon_token"

[connections.legacy]
[connections.legacy.fields.purchase_orders]
primary_key = "key"
updated_at = "updatedAt"
deleted_at = "deletedAt"
renames = {{ orderNo = "order_number" }}
children = [{{ table = "purchase_orders__line_items", field = "lineItems" }}]

[connections.legacy.fields]
work_orders = {V3}
assets = {V3}
inventory_items = {V3}
vendors = {V3}
"""
        run = run_file(tmp_path, sandbox, text,
                       {"hamburg": plain["token"], "lyon_token": vendors_only["token"], "legacy": v3["token"]})
        assert run.returncode == 0, run.stdout + run.stderr
        assert_exact(tmp_path / "w.duckdb", sandbox, connection_ids=[plain["id"], v3["id"]])
        assert_exact(tmp_path / "w.duckdb", sandbox, connection_ids=[vendors_only["id"]], entities=["vendors"])
        with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
            others = con.execute("SELECT COUNT(*) FROM makini.purchase_orders WHERE connection_id = ?",
                                 [vendors_only["id"]]).fetchone()[0]
        assert others == 0  # lyon syncs its vendors only


def test_a_failed_connection_is_named_by_its_entry_in_the_summary(tmp_path):
    with Sandbox(seed=72, sizes=SIZES, connections=2, in_process=True) as sandbox:
        down, up = sandbox.connections
        sandbox.control.set_connection_status(down["id"], "offline")
        text = '[connections.hamburg]\nlabel = "Hamburg plant"\n[connections.lyon]\n'
        run = run_file(tmp_path, sandbox, text, {"hamburg": down["token"], "lyon": up["token"]})
        assert run.returncode == 1
        failed = [line for line in run.stdout.splitlines() if "FAILED" in line]
        assert len(failed) == 1 and f"connection {down['id']} [hamburg (Hamburg plant)]" in failed[0], run.stdout
        assert_exact(tmp_path / "w.duckdb", sandbox, connection_ids=[up["id"]])


BAD_ENTRIES = [
    ('[connections.a]\ntoken = "tok_in_file"\n', {"a": "x"}, "connections.a].*tokens stay in secrets"),
    ("[connections.a]\n", {}, r"connections.a\].*no token in secrets.*SOURCES__MAKINI__TOKENS__A"),
    ('[connections.a]\nrate = "5/min"\n', {"a": "x"}, r"connections.a\].*unknown key.*'rate'"),
    ('[connections.a]\nrate_limit = "lots"\n', {"a": "x"}, r"connections.a\].*rate limit 'lots'.*600/min"),
    ('[connections.a]\nentities = ["orders"]\n', {"a": "x"}, r"connections.a\].*unknown entity 'orders'"),
    ('[connections."a-b"]\n', {"a": "x"}, r"connections.a-b\].*letters, digits or _"),
    ("[connections.a]\n[connections.a.fields.vendors]\nprimary = 1\n", {"a": "x"}, r"connections.a\], fields"),
    ("[connections.a\n", {"a": "x"}, "not readable TOML"),
]


@pytest.mark.parametrize("text, tokens, message", BAD_ENTRIES)
def test_a_bad_entry_fails_before_any_request_naming_it(text, tokens, message, tmp_path, fresh_sandbox):
    fresh_sandbox.control.requests_served(reset=True)
    run = run_file(tmp_path, fresh_sandbox, text, tokens)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and __import__("re").search(message, lines[0]), run.stderr
    assert fresh_sandbox.control.requests_served()["total"] == 0
    assert "tok_in_file" not in run.stderr  # a token, even misplaced, is never echoed
