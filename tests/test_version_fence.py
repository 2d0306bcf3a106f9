"""The version fence on every destination: a stale delta never overwrites a newer row.

One suite, run against all five destinations through the product's delta path
(``makini_sync.integrity.deltas.load_deltas``), which the webhook processor uses too.
"""

import pytest

from makini_sync.integrity.deltas import Delete, Upsert, load_deltas
from sources.makini.settings import ENTITIES
from tests.destination_targets import DESTINATIONS, destination_target

PO = ENTITIES["purchase_orders"]
CONN = "conn_fence"


def order(rid: str, updated_at: str, lines: int, status: str = "approved") -> dict:
    return {
        "id": rid, "order_number": f"PO-{rid}", "status": status, "vendor_id": "vnd_1", "currency": "EUR",
        "order_date": "2026-01-02", "required_date": "2026-02-01", "delivery_date": None,
        "payment_terms": "NET30", "ship_to": {"line1": "1 Main St", "city": "Linz", "postal_code": "4020", "country": "AT"},
        "bill_to": {"line1": "1 Main St", "city": "Linz", "postal_code": "4020", "country": "AT"},
        "total_amount": f"{lines * 10}.00", "custom_fields": {"plant_code": "P1"},
        "created_at": "2026-01-01T00:00:00.000Z", "updated_at": updated_at, "deleted_at": None,
        "line_items": [
            {"line_number": n * 10, "material_code": f"M{n}", "description": "bolt", "quantity": 1.5,
             "unit_of_measure": "EA", "unit_price": "10.00", "delivery_date": "2026-02-01"}
            for n in range(1, lines + 1)
        ],
    }


def up(record: dict) -> Upsert:
    return Upsert(CONN, PO, record)


T1, T2, T3, T4, T5 = (f"2026-03-0{d}T10:00:00.000Z" for d in range(1, 6))


@pytest.fixture(params=DESTINATIONS)
def target(request, isolated_dlt, monkeypatch):
    with destination_target(request.param, isolated_dlt, monkeypatch, request) as t:
        yield t


def test_stale_and_equal_versions_never_replace_newer_ones(target):
    load_deltas(target.profile, [up(order("a", T2, 3)), up(order("b", T1, 2))])
    assert target.versions("purchase_orders", CONN) == {"a": T2, "b": T1}
    # an older version arrives late, and the same version with other content
    load_deltas(target.profile, [up(order("a", T1, 5, status="draft")), up(order("b", T1, 4, status="sent"))])
    assert target.versions("purchase_orders", CONN) == {"a": T2, "b": T1}
    assert target.line_counts(CONN) == {"a": 3, "b": 2}
    # a newer version replaces, lines included (no orphans)
    load_deltas(target.profile, [up(order("a", T3, 1))])
    assert target.versions("purchase_orders", CONN) == {"a": T3, "b": T1}
    assert target.line_counts(CONN) == {"a": 1, "b": 2}


def test_newest_in_a_batch_wins_whatever_the_order(target):
    load_deltas(target.profile, [up(order("a", T3, 2)), up(order("a", T1, 6)), up(order("a", T2, 4))])
    assert target.versions("purchase_orders", CONN) == {"a": T3}
    assert target.line_counts(CONN) == {"a": 2}


def test_hard_delete_leaves_a_tombstone_that_stale_creates_cannot_pass(target):
    load_deltas(target.profile, [up(order("a", T2, 3)), up(order("b", T2, 2))])
    load_deltas(target.profile, [Delete(CONN, PO, "a", T3)])
    assert target.versions("purchase_orders", CONN) == {"b": T2}
    assert target.line_counts(CONN) == {"b": 2}
    # the create or update that raced the delete arrives late: it stays deleted
    load_deltas(target.profile, [up(order("a", T2, 3)), up(order("a", T3, 3))])
    assert target.versions("purchase_orders", CONN) == {"b": T2}
    assert "a" not in target.line_counts(CONN)
    # a genuinely newer version (re-created after the delete) comes back
    load_deltas(target.profile, [up(order("a", T4, 1))])
    assert target.versions("purchase_orders", CONN) == {"a": T4, "b": T2}
    assert target.line_counts(CONN) == {"a": 1, "b": 2}


def test_a_delete_older_than_the_stored_row_does_not_remove_it(target):
    load_deltas(target.profile, [up(order("a", T4, 2))])
    load_deltas(target.profile, [Delete(CONN, PO, "a", T2)])
    assert target.versions("purchase_orders", CONN) == {"a": T4}
    assert target.line_counts(CONN) == {"a": 2}


def test_replaying_a_batch_is_idempotent(target):
    batch = [up(order("a", T2, 3)), up(order("b", T5, 1)), Delete(CONN, PO, "c", T1)]
    load_deltas(target.profile, batch)
    first = (target.versions("purchase_orders", CONN), target.line_counts(CONN))
    # the first load wrote exactly the batch (a table that was never written reads as empty)
    assert first == ({"a": T2, "b": T5}, {"a": 3, "b": 1})
    load_deltas(target.profile, batch)
    assert (target.versions("purchase_orders", CONN), target.line_counts(CONN)) == first
    # and the replayed delete still stands: a stale create of "c" stays out
    load_deltas(target.profile, [up(order("c", T1, 2))])
    assert (target.versions("purchase_orders", CONN), target.line_counts(CONN)) == first


def test_the_first_delta_batch_after_a_sync_is_fenced_too(target):
    # the sync's pipeline writes the newer version; the deltas pipeline has never run
    from makini_sync.integrity.deltas import DELTAS_PIPELINE

    load_deltas(target.profile, [up(order("a", T3, 2))], pipeline_name="makini_sync_like")
    load_deltas(target.profile, [up(order("a", T1, 5))], pipeline_name=DELTAS_PIPELINE)
    assert target.versions("purchase_orders", CONN) == {"a": T3}
    assert target.line_counts(CONN) == {"a": 2}
