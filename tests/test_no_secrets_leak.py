"""At DEBUG, with faults on: no token or webhook secret in any log line, error or stored table."""

import base64
import zlib

import duckdb
import httpx
import orjson

from makini_sandbox import Sandbox
from tests.test_sync_errors import run_cli
from tests.webhook_support import event, new_secret, receiver, run_webhooks_cli, signed_headers


def stored_text(db_path) -> str:
    """Every text value in every table, with dlt's compressed state unpacked."""
    chunks = []
    with duckdb.connect(str(db_path), read_only=True) as db:
        for schema, table in db.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall():
            for row in db.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():
                for value in row:
                    if isinstance(value, str):
                        chunks.append(value)
                        if table == "_dlt_pipeline_state":
                            try:
                                chunks.append(zlib.decompress(base64.b64decode(value)).decode())
                            except Exception:  # noqa: BLE001 - not the compressed state column
                                pass
    return "\n".join(chunks)


def test_no_secret_reaches_logs_errors_or_tables(isolated_dlt):
    tmp = isolated_dlt
    secret = new_secret()
    with Sandbox(seed=3, sizes={"purchase-orders": 300}, connections=2, in_process=True) as sandbox:
        token, other = sandbox.tokens
        sandbox.control.set_faults(seed=2, rate_429=0.2, rate_503=0.2, drop_rate=0.05, retry_after=0)
        bad = run_cli(tmp, sandbox.base_url, orjson.dumps([token, "mk_live_bogus_0123456789abcdef"]).decode(),
                      log_level="DEBUG")
        sync_output = bad.stdout + bad.stderr
        assert bad.returncode == 1 and "DEBUG" in sync_output and "401" in sync_output
        sandbox.control.clear_faults()
        with receiver(tmp, [secret], log_level="DEBUG") as url:
            body = event("evt_s", "record.created", sandbox.connections[0]["id"], entity="vendors",
                         record={"id": "v1", "updated_at": "2026-03-01T00:00:00.000Z"})
            assert httpx.post(url + "/webhooks/makini", content=body, headers=signed_headers([secret], "evt_s", body)).status_code == 200
            wrong = httpx.post(url + "/webhooks/makini", content=body, headers=signed_headers([new_secret()], "evt_x", body))
            assert wrong.status_code == 401 and secret not in wrong.text
        processed = run_webhooks_cli(tmp, [secret], "--log-level", "DEBUG", "process", "--once", "--destination", "duckdb",
                                     DESTINATION__DUCKDB__CREDENTIALS=str(tmp / "cli.duckdb"))
        assert processed.returncode == 0, processed.stderr[-2000:]
        logs = sync_output + processed.stdout + processed.stderr
        logs += "".join(p.read_text(errors="replace") for p in tmp.glob("receiver-*.log"))
        stored = stored_text(tmp / "cli.duckdb")
        assert "v1" in stored  # the tables really were written
        for needle in (token, token[8:], other, "mk_live_bogus_0123456789abcdef", secret, secret[6:]):
            assert needle not in logs, f"a secret reached the logs: ...{needle[-6:]}"
            assert needle not in stored, f"a secret reached a stored table: ...{needle[-6:]}"
