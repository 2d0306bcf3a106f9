"""The five destinations as test targets: a profile, a way to read tables back, a reset.

PostgreSQL and MariaDB are the machine's real servers; Snowflake is fakesnow
(tests/fakesnow_support.py); MongoDB is SecantusDB (tests/mongo_server.py).
A server that is absent skips its target outside CI and fails in CI.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from makini_sync.integrity.fence import as_utc
from makini_sync.destinations.profiles import Profile, load_profile, make_pipeline
from sources.makini.bookmark import iso_ms

DESTINATIONS = ["duckdb", "postgres", "mysql", "snowflake", "mongodb"]
POSTGRES_URL = os.environ.get("MAKINI_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("MAKINI_TEST_MYSQL", "mysql+pymysql://root:@127.0.0.1:3306/test")


def unavailable(what: str, why: Exception) -> None:
    message = f"{what} is not reachable ({type(why).__name__}: {why})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must have it (.ci/run starts it)")
    pytest.skip(f"{message}; skipped outside CI")


class Target:
    """One destination under test."""

    name: str
    profile: Profile

    def versions(self, table: str, connection_id: str) -> dict[str, str]:
        rows = self.query(table, ["id", "updated_at"], connection_id)
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids)), f"{self.name}: duplicate rows in {table}"
        return {rid: iso_ms(as_utc(ts)) for rid, ts in rows}

    def line_counts(self, connection_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (po_id,) in self.query("purchase_orders__line_items", ["purchase_order_id"], connection_id):
            counts[po_id] = counts.get(po_id, 0) + 1
        return counts

    def query(self, table: str, columns: list[str], connection_id: str) -> list[tuple]:
        raise NotImplementedError


class SqlTarget(Target):
    def __init__(self, name: str, profile: Profile) -> None:
        self.name, self.profile = name, profile

    def query(self, table, columns, connection_id):
        pipeline = make_pipeline(self.profile, "makini_sync")
        with pipeline.sql_client() as client:
            try:
                qualified = client.make_qualified_table_name(table)
            except Exception:  # noqa: BLE001
                return []
            cols = ", ".join(client.escape_column_name(c) for c in columns)
            try:
                return [tuple(r) for r in client.execute_sql(
                    f"SELECT {cols} FROM {qualified} WHERE {client.escape_column_name('connection_id')} = %s",
                    connection_id,
                ) or []]
            except Exception as exc:  # noqa: BLE001 - the table does not exist yet
                if "exist" in str(exc).lower() or "not found" in str(exc).lower() or "catalog" in str(exc).lower():
                    return []
                raise


class MongoTarget(Target):
    def __init__(self, uri: str) -> None:
        self.name = "mongodb"
        self.profile = load_profile("mongodb")
        self.uri = uri

    def query(self, table, columns, connection_id):
        import pymongo

        db = pymongo.MongoClient(self.uri).get_default_database()
        if table == "purchase_orders__line_items":
            rows = []
            for doc in db["purchase_orders"].find({"connection_id": connection_id}):
                rows.extend((doc["id"],) for _ in doc.get("line_items") or [])
            return rows
        return [tuple(doc.get(c) for c in columns) for doc in db[table].find({"connection_id": connection_id})]


def _drop_postgres() -> None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL.replace("postgresql://", "postgresql://", 1), autocommit=True) as conn:
            staging = [r[0] for r in conn.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'makini_staging%'")]
            for schema in ("makini", *staging):  # each pipeline has a staging dataset of its own
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL at 127.0.0.1:5432", exc)


def _drop_mysql() -> None:
    import pymysql

    try:
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    except pymysql.err.OperationalError as exc:
        unavailable("MariaDB at 127.0.0.1:3306", exc)
    with conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'makini_staging%'")
        for db in ("makini", *(r[0] for r in cur.fetchall())):  # each pipeline has a staging dataset of its own
            cur.execute(f"DROP DATABASE IF EXISTS {db}")


@contextlib.contextmanager
def destination_target(name: str, tmp_path: Path, monkeypatch, request) -> Iterator[Target]:
    """A clean destination ``name`` with its credentials in the environment."""
    if name == "duckdb":
        monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "w.duckdb"))
        yield SqlTarget(name, load_profile("duckdb"))
    elif name == "postgres":
        _drop_postgres()
        monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
        yield SqlTarget(name, load_profile("postgres"))
    elif name == "mysql":
        _drop_mysql()
        monkeypatch.setenv("DESTINATION__MYSQL__CREDENTIALS", MYSQL_URL)
        yield SqlTarget(name, load_profile("mysql"))
    elif name == "snowflake":
        from tests.fakesnow_support import fakesnow_destination, snowflake_profile

        with fakesnow_destination(tmp_path):
            yield SqlTarget(name, snowflake_profile())
    elif name == "mongodb":
        base = request.getfixturevalue("mongo_uri")
        uri = f"{base.rstrip('/')}/makini_{uuid.uuid4().hex[:8]}"
        monkeypatch.setenv("DESTINATION__MONGODB__CREDENTIALS", uri)
        yield MongoTarget(uri)
    else:
        raise ValueError(name)
