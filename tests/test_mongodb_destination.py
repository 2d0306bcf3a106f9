"""The MongoDB destination against a real wire-protocol server (SecantusDB).

Data goes through a real dlt pipeline into ``makini_sync.destinations.mongodb``; every
test uses its own database, named in the credentials URI. Data stays small:
the server does about 1k upserts/s.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid

import dlt
import pytest
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import DestinationTransientException
from pymongo import MongoClient

from makini_sync.destinations import mongodb
from makini_sync.destinations.mongodb import apply_hard_deletes, is_stale

REF = "makini_sync.destinations.mongodb.mongodb_destination"
# the real source hints this column too; without it dlt warns on all-null batches
HINTS = {"deleted_at": {"data_type": "timestamp", "nullable": True}}
UTC = dt.timezone.utc


def ts(minute: int) -> str:
    return f"2024-05-01T10:{minute:02d}:00.123Z"


def when(minute: int) -> dt.datetime:
    return dt.datetime(2024, 5, 1, 10, minute, 0, 123000, tzinfo=UTC)


def po(pid: str, minute: int, lines: list[tuple[int, str]] | None = None, **extra) -> dict:
    return {
        "connection_id": "conn-1",
        "id": pid,
        "number": f"PO-{pid}",
        "status": extra.pop("status", "open"),
        "updated_at": ts(minute),
        "deleted_at": None,
        "shipping_address": {"city": "Oslo", "lines": ["Street 1"]},
        "custom_fields": json.dumps({"priority": extra.pop("priority", "low")}),
        "line_items": [
            {"line_number": n, "sku": sku, "quantity": 1.5} for n, sku in (lines or [(1, "A")])
        ],
        **extra,
    }


def key(pid: str, connection: str = "conn-1") -> dict:
    return {"connection_id": connection, "id": pid}


@pytest.fixture(scope="module", autouse=True)
def _close_clients():
    yield
    mongodb.close_clients()


@pytest.fixture
def target(mongo_uri, monkeypatch, tmp_path):
    """A fresh database; returns (pymongo Database, run(table, rows) via dlt)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    uri = f"{mongo_uri}{name}"
    monkeypatch.setenv("DESTINATION__MONGODB__CREDENTIALS", uri)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    pipeline = dlt.pipeline(
        pipeline_name=name,
        destination=Destination.from_reference(REF, destination_name="mongodb"),
        dataset_name="makini",
        pipelines_dir=str(tmp_path / "pipelines"),
    )

    def run(table: str, rows: list[dict]):
        resource = dlt.resource(list(rows), name=table, write_disposition="append",
                                max_table_nesting=0, columns=HINTS)
        return pipeline.run(resource)

    client = MongoClient(mongo_uri, tz_aware=True)
    yield client[name], run, pipeline
    client.drop_database(name)
    client.close()


def docs(db, table="purchase_orders") -> dict[str, dict]:
    return {d["_id"]["id"]: d for d in db[table].find()}


# ------------------------------------------------------------------ the pure rule
@pytest.mark.parametrize(
    "stored, incoming, stale",
    [(None, 5, False), (4, 5, False), (5, 5, True), (6, 5, True)],
)
def test_is_stale_older_or_equal_is_not_written(stored, incoming, stale):
    s = when(stored) if stored is not None else None
    assert is_stale(s, when(incoming)) is stale


# ------------------------------------------------------------------ through dlt
def test_documents_keyed_by_compound_id_and_rerun_does_not_duplicate(target):
    db, run, _ = target
    rows = [po("1", 1), po("2", 1), {**po("1", 1), "connection_id": "conn-2"}]
    run("purchase_orders", rows)
    run("purchase_orders", rows)
    stored = list(db.purchase_orders.find())
    assert sorted((d["_id"]["connection_id"], d["_id"]["id"]) for d in stored) == [
        ("conn-1", "1"), ("conn-1", "2"), ("conn-2", "1")]
    assert list(stored[0]["_id"]) == ["connection_id", "id"]
    doc = db.purchase_orders.find_one({"_id": key("1")})
    assert doc["updated_at"] == when(1)  # a BSON datetime, ms precision, UTC
    assert doc["custom_fields"] == {"priority": "low"}  # JSON string -> sub-document
    assert doc["shipping_address"] == {"city": "Oslo", "lines": ["Street 1"]}
    assert doc["line_items"] == [{"line_number": 1, "sku": "A", "quantity": 1.5}]
    assert "deleted_at" in doc and doc["deleted_at"] is None
    assert not any(k.startswith("_dlt") for k in doc)
    assert not [c for c in db.list_collection_names() if c.startswith("_dlt")]


def test_newer_version_replaces(target):
    db, run, _ = target
    run("purchase_orders", [po("1", 1)])
    run("purchase_orders", [po("1", 2, status="closed")])
    doc = docs(db)["1"]
    assert (doc["status"], doc["updated_at"]) == ("closed", when(2))


def test_stale_version_never_overwrites(target):
    db, run, _ = target
    run("purchase_orders", [po("1", 5, status="closed")])
    run("purchase_orders", [po("1", 3, status="open"), po("2", 3)])
    stored = docs(db)
    assert (stored["1"]["status"], stored["1"]["updated_at"]) == ("closed", when(5))
    assert stored["2"]["updated_at"] == when(3)  # the rest of the batch still loads


def test_equal_updated_at_is_the_same_version(target):
    db, run, _ = target
    run("purchase_orders", [po("1", 5, status="closed")])
    run("purchase_orders", [po("1", 5, status="something-else")])
    assert docs(db)["1"]["status"] == "closed"


def test_newest_wins_within_one_batch_in_any_order(target):
    db, run, _ = target
    run("purchase_orders", [po("1", 4, status="v4"), po("1", 6, status="v6"),
                            po("1", 5, status="v5")])
    assert docs(db)["1"]["status"] == "v6"


def test_line_items_replaced_wholesale_with_the_order(target):
    db, run, _ = target
    run("purchase_orders", [po("1", 1, lines=[(1, "A"), (2, "B"), (3, "C")])])
    run("purchase_orders", [po("1", 2, lines=[(1, "A2")])])
    run("purchase_orders", [po("1", 1, lines=[(1, "A"), (2, "B"), (3, "C")])])  # stale
    assert docs(db)["1"]["line_items"] == [{"line_number": 1, "sku": "A2", "quantity": 1.5}]


def test_soft_delete_keeps_the_document(target):
    db, run, _ = target
    run("vendors", [{"connection_id": "conn-1", "id": "v1", "name": "Acme",
                     "updated_at": ts(1), "deleted_at": None}])
    run("vendors", [{"connection_id": "conn-1", "id": "v1", "name": "Acme",
                     "updated_at": ts(2), "deleted_at": ts(2)}])
    doc = docs(db, "vendors")["v1"]
    assert doc["deleted_at"] == when(2)


def test_hard_delete_removes_and_leaves_tombstone(target):
    db, run, _ = target
    run("purchase_orders", [po("1", 1), po("2", 1)])
    assert apply_hard_deletes(db, "purchase_orders", [("conn-1", "1", when(3))]) == 1
    assert set(docs(db)) == {"2"}  # line items were embedded: gone with the order
    tomb = db["_makini_tombstones"].find_one()
    assert tomb["_id"] == {"connection_id": "conn-1", "entity": "purchase_orders", "id": "1"}
    assert tomb["updated_at"] == when(3)
    # an older deletion does not move the tombstone back
    apply_hard_deletes(db, "purchase_orders", [("conn-1", "1", when(2))])
    assert db["_makini_tombstones"].find_one()["updated_at"] == when(3)


def test_hard_delete_keeps_a_version_newer_than_the_deletion(target):
    db, run, _ = target
    run("purchase_orders", [po("1", 5)])
    assert apply_hard_deletes(db, "purchase_orders", [("conn-1", "1", when(3))]) == 0
    assert docs(db)["1"]["updated_at"] == when(5)


def test_stale_create_after_hard_delete_does_not_resurrect(target):
    db, run, _ = target
    run("purchase_orders", [po("1", 1), po("2", 1)])
    apply_hard_deletes(db, "purchase_orders", [("conn-1", "1", when(3)), ("conn-1", "2", when(3))])
    run("purchase_orders", [po("1", 2), po("2", 3)])  # older, and equal to the deletion
    assert docs(db) == {}
    run("purchase_orders", [po("1", 4)])  # a version after the deletion is a new life
    assert set(docs(db)) == {"1"}


def test_replayed_batch_is_idempotent(target, monkeypatch):
    """dlt re-sends a batch whole when the destination call failed: here the
    first call writes and then fails transiently; dlt sends the same batch
    again, which the fence turns into a no-op."""
    db, run, pipeline = target
    real = mongodb.upsert_documents
    results = []

    def write_then_fail(*args, **kwargs):
        result = real(*args, **kwargs)
        results.append(result)
        if len(results) == 1:
            raise DestinationTransientException("injected failure after the write")
        return result

    monkeypatch.setattr(mongodb, "upsert_documents", write_then_fail)
    rows = [po(str(i), 1) for i in range(5)]
    try:
        run("purchase_orders", rows)
    except Exception:  # dlt may give up on this run and leave the package pending
        pipeline.load()
    assert [(r.written, r.stale) for r in results] == [(5, 0), (0, 5)]  # really re-sent
    assert len(docs(db)) == 5
    assert db.purchase_orders.count_documents({}) == 5


def test_indexes_exist(target):
    db, run, _ = target
    run("purchase_orders", [po("1", 1)])
    keys = {tuple(ix["key"]) for ix in db.purchase_orders.index_information().values()}
    assert (("connection_id", 1), ("updated_at", 1)) in keys
    assert (("deleted_at", 1),) in keys


def test_database_defaults_to_the_dataset_name(mongo_uri, monkeypatch, tmp_path):
    dataset = f"ds_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DESTINATION__MONGODB__CREDENTIALS", mongo_uri)  # no database path
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path))
    pipeline = dlt.pipeline(pipeline_name=dataset, dataset_name=dataset,
                            destination=Destination.from_reference(REF, destination_name="mongodb"),
                            pipelines_dir=str(tmp_path / "p"))
    pipeline.run(dlt.resource([po("1", 1)], name="purchase_orders", max_table_nesting=0,
                               columns=HINTS))
    client = MongoClient(mongo_uri)
    try:
        assert client[dataset].purchase_orders.count_documents({}) == 1
    finally:
        client.drop_database(dataset)
        client.close()


def test_credentials_never_reach_the_log(mongo_uri, monkeypatch, tmp_path, caplog):
    """Runs last in this module: it adds a user to the shared server."""
    password = "s3cr3t-pw"
    admin = MongoClient(mongo_uri)
    user = f"loader_{uuid.uuid4().hex[:6]}"  # a server the session reuses may hold an earlier run's user
    admin.admin.command("createUser", user, pwd=password,
                        roles=[{"role": "root", "db": "admin"}])
    name = f"t_{uuid.uuid4().hex[:8]}"
    host = mongo_uri.removeprefix("mongodb://")
    uri = f"mongodb://{user}:{password}@{host}{name}?authSource=admin"
    assert password not in mongodb.redact_uri(uri)
    monkeypatch.setenv("DESTINATION__MONGODB__CREDENTIALS", uri)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    pipeline = dlt.pipeline(pipeline_name=name, dataset_name="makini",
                            destination=Destination.from_reference(REF, destination_name="mongodb"),
                            pipelines_dir=str(tmp_path / "p"))
    try:
        with caplog.at_level(logging.DEBUG):
            pipeline.run(dlt.resource([po("1", 1)], name="purchase_orders",
                                      max_table_nesting=0, columns=HINTS))
        assert admin[name].purchase_orders.count_documents({}) == 1
        ours = [r.getMessage() for r in caplog.records if r.name == "makini_sync.destinations.mongodb"]
        assert ours and user not in ours[0] and "***@" in ours[0]
        assert password not in caplog.text
    finally:
        admin.drop_database(name)
        admin.close()
