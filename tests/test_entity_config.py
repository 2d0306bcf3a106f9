"""Entities and field names come from dlt config; bad config fails before any request, naming the key."""

import pytest

from sources.makini.entity_config import load_registry
from sources.makini.errors import ConfigurationError
from sources.makini.settings import ENTITIES

PLANS = {
    "maintenance_plans": {
        "path": "/api/v1/maintenance-plans",
        "max_page_size": 200,
        "column_types": {"next_due": "date"},
        "children": [{"field": "tasks", "table": "maintenance_plans__tasks", "key": "task_number",
                      "parent_column": "maintenance_plan_id"}],
    }
}
V3 = {"conn_v3": {"entities": {"purchase_orders": {
    "primary_key": "key", "updated_at": "updatedAt", "deleted_at": "deletedAt", "renames": {"orderNo": "order_number"},
    "children": [{"table": "purchase_orders__line_items", "field": "lineItems"}],
}}}}


def test_without_config_the_five_built_in_entities_are_the_defaults():
    registry = load_registry({}, {})
    assert registry.entities == ENTITIES
    assert registry.for_connection("any", "vendors") == ENTITIES["vendors"]


def test_a_custom_entity_and_a_connection_with_v3_names():
    registry = load_registry(PLANS, V3)
    plans = registry.resolve(["maintenance-plans"])[0]
    assert (plans.table, plans.path, plans.max_page_size) == ("maintenance_plans", "/api/v1/maintenance-plans", 200)
    assert plans.children[0].parent_column == "maintenance_plan_id" and plans.column_types == {"next_due": "date"}
    assert (plans.primary_key, plans.updated_at, plans.deleted_at) == ("id", "updated_at", "deleted_at")
    assert registry.for_connection("conn_v1", "maintenance_plans") == plans  # every connection has it

    v3 = registry.for_connection("conn_v3", "purchase_orders")
    assert (v3.primary_key, v3.updated_at, v3.deleted_at) == ("key", "updatedAt", "deletedAt")
    assert v3.children[0].field == "lineItems" and v3.children[0].table == "purchase_orders__line_items"
    assert v3.children[0].key == "line_number"  # the warehouse's names stay
    assert v3.renames == {"orderNo": "order_number"}
    assert registry.for_connection("conn_v1", "purchase_orders") == ENTITIES["purchase_orders"]
    assert registry.by_slug("purchase-orders", "conn_v3") == v3


def test_an_entity_only_one_connection_has():
    registry = load_registry({}, {"conn_a": {"entities": {"permits": {"path": "/api/v1/permits"}}}})
    assert registry.for_connection("conn_a", "permits").max_page_size == 500  # the API clamps larger limits
    assert registry.for_connection("conn_b", "permits") is None
    assert [e.table for e in registry.resolve(None)][-1] == "permits"


def test_config_from_env_as_json(monkeypatch):
    import orjson

    monkeypatch.setenv("SOURCES__MAKINI__ENTITIES", orjson.dumps(PLANS).decode())
    monkeypatch.setenv("SOURCES__MAKINI__CONNECTIONS", orjson.dumps(V3).decode())
    registry = load_registry()
    assert "maintenance_plans" in registry.entities
    assert registry.for_connection("conn_v3", "purchase_orders").primary_key == "key"


@pytest.mark.parametrize("entities, connections, names", [
    ({"plans": {"max_page_size": 10}}, {}, ["sources.makini.entities.plans", "path"]),
    ({"plans": {"path": "api/v1/plans"}}, {}, ["sources.makini.entities.plans.path", "start with /"]),
    ({"plans": {"path": "/api/v1/plans", "pth": 1}}, {}, ["sources.makini.entities.plans", "'pth'", "path"]),
    ({"plans": {"path": "/p", "max_page_size": 0}}, {}, ["max_page_size", "1 to 10000"]),
    ({"plans": {"path": "/p", "column_types": {"x": "datetime"}}}, {}, ["column_types.x", "timestamp"]),
    ({"Plans-2": {"path": "/p"}}, {}, ["'Plans-2'", "lower case"]),
    ({"plans": {"path": "/p", "children": [{"field": "tasks"}]}}, {}, ["children[0]", "table"]),
    ({"plans": {"path": "/p", "children": [{"field": "t", "table": "plans__t"}]}}, {}, ["key, parent_column"]),
    ({}, {"c": {"entities": {"purchase_orders": {"children": [{"table": "x", "field": "y"}]}}}},
     ["sources.makini.connections.c.entities.purchase_orders.children[0]", "purchase_orders__line_items"]),
    ({}, {"c": {"entities": {"vendors": {"primary_key": 5}}}}, ["vendors.primary_key", "field name"]),
    ('{"vendors": {"updated_at": null}}', {}, ["vendors.updated_at", "not null"]),  # JSON null
    ({}, {"c": {"entity": {}}}, ["sources.makini.connections.c", "'entity'", "entities"]),
    ("{not json", {}, ["sources.makini.entities", "JSON"]),
])
def test_bad_config_names_the_key_and_what_to_write(entities, connections, names):
    with pytest.raises(ConfigurationError) as caught:
        load_registry(entities, connections)
    message = str(caught.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message


def test_bad_entity_config_fails_the_sync_before_any_request(monkeypatch, tmp_path, capsys):
    from pipelines.sync import main

    monkeypatch.setenv("SOURCES__MAKINI__BASE_URL", "http://127.0.0.1:9")  # nothing listens: no request may be made
    monkeypatch.setenv("SOURCES__MAKINI__API_TOKEN", "t")
    monkeypatch.setenv("SOURCES__MAKINI__ENTITIES", '{"plans": {"max_page_size": 10}}')
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    assert main(["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "sources.makini.entities.plans needs a path" in err
    assert not (tmp_path / "w.duckdb").exists()
