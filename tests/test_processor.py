"""The processor merges stored events into the sync's tables, and dead-letters what it cannot apply."""

import duckdb
import httpx

from tests.webhook_support import event, new_secret, receiver, run_webhooks_cli, signed_headers

SECRETS = [new_secret()]
T1, T2, T3 = "2026-03-01T10:00:00.000Z", "2026-03-02T10:00:00.000Z", "2026-03-03T10:00:00.000Z"


def po(rid, updated_at, lines=2, status="approved"):
    return {"id": rid, "status": status, "order_number": f"PO-{rid}", "updated_at": updated_at,
            "created_at": T1, "deleted_at": None, "custom_fields": {"cost_center": "CC1"},
            "line_items": [{"line_number": n, "material_code": f"M{n}", "quantity": 2} for n in range(1, lines + 1)]}


def send(url, webhook_id, body):
    response = httpx.post(url + "/webhooks/makini", content=body, headers=signed_headers(SECRETS, webhook_id, body))
    assert response.status_code == 200, response.text


def rows(tmp_path, sql):
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as db:
        return db.execute(sql).fetchall()


def test_events_in_any_order_end_as_the_newest_version(tmp_path):
    with receiver(tmp_path, SECRETS) as url:
        # out of order, duplicated, and a delete that raced an update
        send(url, "e3", event("e3", "record.updated", "conn_a", record=po("a", T3, lines=1)))
        send(url, "e1", event("e1", "record.created", "conn_a", record=po("a", T1, lines=4)))
        send(url, "e3", event("e3", "record.updated", "conn_a", record=po("a", T3, lines=1)))
        send(url, "e2", event("e2", "record.created", "conn_a", record=po("b", T1)))
        send(url, "e4", event("e4", "record.deleted", "conn_a", record={"id": "b", "updated_at": T2}))
        send(url, "e5", event("e5", "record.updated", "conn_a", record=po("b", T1, status="sent")))
        send(url, "e6", event("e6", "sync.failed", "conn_a", error="SAP unreachable"))
    run = run_webhooks_cli(tmp_path, SECRETS, "process", "--once", "--destination", "duckdb")
    assert run.returncode == 0, run.stderr[-3000:]
    assert rows(tmp_path, "SELECT id, status, updated_at FROM makini.purchase_orders") and \
        [r[:2] for r in rows(tmp_path, "SELECT id, status FROM makini.purchase_orders")] == [("a", "approved")]
    assert rows(tmp_path, "SELECT COUNT(*) FROM makini.purchase_orders__line_items") == [(1,)]
    assert rows(tmp_path, "SELECT type, error FROM makini.connection_events") == [("sync.failed", "SAP unreachable")]
    assert "sync.failed" in run.stderr and "ERROR" in run.stderr  # logged at error level
    # a second drain has nothing left to do
    again = run_webhooks_cli(tmp_path, SECRETS, "process", "--once", "--destination", "duckdb")
    assert again.returncode == 0


def test_unappliable_events_are_dead_lettered_and_can_be_replayed(tmp_path):
    with receiver(tmp_path, SECRETS) as url:
        send(url, "good", event("good", "record.created", "conn_a", record=po("a", T1)))
        send(url, "poison", event("poison", "record.created", "conn_a", entity="spaceships", record=po("z", T1)))
    run = run_webhooks_cli(tmp_path, SECRETS, "process", "--once", "--destination", "duckdb")
    assert run.returncode == 0, run.stderr[-3000:]
    assert rows(tmp_path, "SELECT id FROM makini.purchase_orders") == [("a",)]
    listed = run_webhooks_cli(tmp_path, SECRETS, "dlq", "list")
    assert "poison" in listed.stdout and "unknown entity 'spaceships'" in listed.stdout
    assert "good" not in listed.stdout
    replayed = run_webhooks_cli(tmp_path, SECRETS, "dlq", "replay", "poison")
    assert "re-queued 1 event" in replayed.stdout
    assert "poison" not in run_webhooks_cli(tmp_path, SECRETS, "dlq", "list").stdout


def test_missing_secret_is_a_configuration_error(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    run = subprocess.run([sys.executable, "-m", "pipelines.webhooks", "--inbox", str(tmp_path / "i.sqlite"), "serve",
                          "--port", "0"], cwd=tmp_path, env={**env, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parent.parent)},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "SOURCES__MAKINI__WEBHOOK_SECRET" in run.stderr
