"""dlt's snowflake destination merges into fakesnow as the project loads Snowflake.

The resource below has the project's load contract: Arrow tables, a composite
primary key, delete-insert merge with ``dedup_sort`` on ``updated_at``, and line
items as a second table hinted with ``dlt.mark.with_hints``. After each load the
project prunes child rows of superseded parent versions with a correlated
``DELETE … WHERE EXISTS``; that statement is run here through ``sql_client()``.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import dlt
import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from makini_sync.destinations.profiles import make_pipeline as make_profile_pipeline
from tests.fakesnow_support import PATCHES, fakesnow_destination, snowflake_profile

MERGE = {"disposition": "merge", "strategy": "delete-insert"}
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
TS = pa.timestamp("ms", tz="UTC")

PO_SCHEMA = pa.schema([
    ("connection_id", pa.string()),
    ("id", pa.string()),
    ("updated_at", TS),
    ("deleted_at", TS),
    ("total", pa.float64()),
    ("custom_fields", pa.string()),
])
LINE_SCHEMA = pa.schema([
    ("connection_id", pa.string()),
    ("id", pa.string()),
    ("purchase_order_id", pa.string()),
    ("purchase_order_updated_at", TS),
    ("quantity", pa.float64()),
])


def po(conn, rid, minutes, total=1.0, deleted=False):
    at = T0 + timedelta(minutes=minutes)
    return {"connection_id": conn, "id": rid, "updated_at": at, "deleted_at": at if deleted else None,
            "total": total, "custom_fields": f'{{"ref": "{rid}", "n": {minutes}}}'}


def line(conn, rid, po_id, po_minutes, quantity=1.0):
    return {"connection_id": conn, "id": rid, "purchase_order_id": po_id,
            "purchase_order_updated_at": T0 + timedelta(minutes=po_minutes), "quantity": quantity}


def purchase_orders(orders, lines):
    @dlt.resource(name="purchase_orders", primary_key=["connection_id", "id"], write_disposition=MERGE,
                  columns={"updated_at": {"dedup_sort": "desc"}})
    def resource():
        yield pa.Table.from_pylist(orders, schema=PO_SCHEMA)
        if lines:
            yield dlt.mark.with_hints(
                pa.Table.from_pylist(lines, schema=LINE_SCHEMA),
                dlt.mark.make_hints(table_name="purchase_orders__line_items",
                                    primary_key=["connection_id", "id"], write_disposition=MERGE),
                create_table_variant=True,
            )
    return resource()


def prune_superseded_lines(pipeline):
    """The project's child pruning statement (makini_sync/integrity/pruning.py), same shape."""
    with pipeline.sql_client() as client:
        parent = client.make_qualified_table_name("purchase_orders")
        child = client.make_qualified_table_name("purchase_orders__line_items")
        q = client.escape_column_name
        client.execute_sql(
            f"DELETE FROM {child} WHERE EXISTS (SELECT 1 FROM {parent} p"
            f" WHERE p.{q('connection_id')} = {child}.{q('connection_id')}"
            f" AND p.{q('id')} = {child}.{q('purchase_order_id')}"
            f" AND p.{q('updated_at')} <> {child}.{q('purchase_order_updated_at')})"
        )


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    return tmp_path


def make_pipeline(fs, name="fakesnow_merge"):
    return dlt.pipeline(pipeline_name=name, destination=fs.destination, dataset_name="makini")


def test_merge_keeps_newest_version_and_prunes_superseded_lines(data_dir):
    with fakesnow_destination(data_dir) as fs:
        pipeline = make_pipeline(fs)
        first = [po("c1", "p1", 1), po("c1", "p2", 1), po("c1", "p3", 1), po("c2", "p1", 1)]
        first_lines = [line("c1", "l1", "p1", 1), line("c1", "l2", "p1", 1), line("c1", "l3", "p2", 1),
                       line("c2", "l1", "p1", 1)]
        pipeline.run(purchase_orders(first, first_lines), loader_file_format="parquet")
        prune_superseded_lines(pipeline)

        assert fs.query("SELECT COUNT(*) FROM makini.purchase_orders") == [(4,)]
        assert fs.query("SELECT COUNT(*) FROM makini.purchase_orders__line_items") == [(4,)]

        # p1 arrives twice in one batch (older copy last), p2 is soft-deleted, p4 is new;
        # p1's new version has only line l1, p2's none: l2 and l3 belong to superseded versions.
        second = [po("c1", "p1", 5, total=5.0), po("c1", "p2", 3, deleted=True),
                  po("c1", "p4", 3), po("c1", "p1", 2, total=2.0)]
        second_lines = [line("c1", "l1", "p1", 5, quantity=5.0), line("c1", "l4", "p4", 3)]
        pipeline.run(purchase_orders(second, second_lines), loader_file_format="parquet")
        prune_superseded_lines(pipeline)

        rows = fs.query(
            "SELECT connection_id, id, updated_at, deleted_at IS NOT NULL, total, custom_fields"
            " FROM makini.purchase_orders ORDER BY connection_id, id"
        )
        got = {(c, i): (u, d, t, cf) for c, i, u, d, t, cf in rows}
        assert len(rows) == len(got) == 5, "duplicate primary keys after merge"
        assert got[("c1", "p1")][2] == 5.0, "the newer of two versions in one batch must win"
        assert got[("c1", "p1")][0] == T0 + timedelta(minutes=5)
        assert got[("c1", "p1")][3] == '{"ref": "p1", "n": 5}'
        assert got[("c1", "p2")][1] is True, "soft delete keeps the row with deleted_at"
        assert got[("c2", "p1")][0] == T0 + timedelta(minutes=1), "same id, other connection untouched"

        lines = fs.query("SELECT connection_id, id, purchase_order_id, quantity"
                         " FROM makini.purchase_orders__line_items ORDER BY connection_id, id")
        # c1: l1 updated, l4 new, l2 and l3 pruned; c2's l1 (same id, parent unchanged) kept
        assert lines == [("c1", "l1", "p1", 5.0), ("c1", "l4", "p4", 1.0), ("c2", "l1", "p1", 1.0)]


def test_project_profile_reaches_the_emulator_by_env_credentials(data_dir):
    with fakesnow_destination(data_dir) as fs:
        profile = snowflake_profile()
        pipeline = make_profile_pipeline(profile, pipeline_name="profile_path")
        pipeline.run(purchase_orders([po("c1", "p1", 1)], [line("c1", "l1", "p1", 1)]),
                     loader_file_format=profile.loader_file_format)
        assert fs.query("SELECT id FROM makini.purchase_orders__line_items") == [("l1",)]


def test_pipeline_state_is_restored_from_the_emulator(data_dir, monkeypatch):
    """Nothing of dlt's is skipped: a fresh working dir gets its state back from fakesnow."""
    with fakesnow_destination(data_dir) as fs:
        pipeline = make_pipeline(fs, "state_roundtrip")
        pipeline.run(purchase_orders([po("c1", "p1", 1)], []), loader_file_format="parquet")
        pipeline.run(purchase_orders([po("c1", "p2", 1)], []), loader_file_format="parquet")
        stored_version = pipeline.state["_state_version"]

        monkeypatch.setenv("DLT_DATA_DIR", str(data_dir / "fresh"))
        restored = make_pipeline(fs, "state_roundtrip")
        restored.sync_destination()
        assert restored.state["_state_version"] == stored_version
        assert "purchase_orders" in restored.default_schema.tables
        assert fs.query("SELECT COUNT(*) FROM makini._dlt_pipeline_state")[0][0] >= 1


# What fakesnow says about dlt's statement when the patch is off.
UNPATCHED_SYMPTOMS = {
    "put_quoted_stage": "does not start with @",
    "file_format_commas": "SequenceProperties'> is not a Property",
    "match_by_column_name_quoted": "MATCH_BY_COLUMN_NAME with",
    "jsonl_match_by_column_name": 'table "_DLT_PIPELINE_STATE" has',
}


def test_every_patch_has_a_known_symptom():
    assert UNPATCHED_SYMPTOMS.keys() == PATCHES.keys()


@pytest.mark.parametrize("patch_name", sorted(PATCHES))
def test_each_fakesnow_patch_is_still_needed(data_dir, monkeypatch, patch_name):
    """Without the patch, dlt's load fails for that patch's reason.

    If fakesnow learns one of dlt's statements, this fails and the patch can go.
    """
    monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")  # fail fast instead of 5 retries
    with fakesnow_destination(data_dir, without_patches=frozenset({patch_name})) as fs:
        pipeline = make_pipeline(fs, f"without_{patch_name}")
        with pytest.raises(PipelineStepFailed) as failure:
            pipeline.run(purchase_orders([po("c1", "p1", 1)], []), loader_file_format="parquet")
    assert UNPATCHED_SYMPTOMS[patch_name] in str(failure.value)


@pytest.mark.parametrize("rows", [1_000, 10_000])
def test_merge_timing(data_dir, rows):
    with fakesnow_destination(data_dir) as fs:
        pipeline = make_pipeline(fs, f"timing_{rows}")
        orders = [po("c1", f"p{i}", 1) for i in range(rows)]
        lines = [line("c1", f"l{i}", f"p{i}", 1) for i in range(rows)]
        timings = []
        for minutes in (1, 2):
            for o in orders:
                o["updated_at"] = T0 + timedelta(minutes=minutes)
            started = time.perf_counter()
            pipeline.run(purchase_orders(orders, lines), loader_file_format="parquet")
            timings.append(time.perf_counter() - started)
        assert fs.query("SELECT COUNT(*) FROM makini.purchase_orders") == [(rows,)]
        print(f"fakesnow merge of {rows} orders + {rows} lines: "
              f"first load {timings[0]:.2f}s, re-merge {timings[1]:.2f}s")
