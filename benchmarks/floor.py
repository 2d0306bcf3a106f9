"""The floor: the fastest pipeline that still lands every record, in its own process like a sync.

    python benchmarks/floor.py --mode floor|fetch_parse --base-url URL --token T --db PATH \\
        --limits purchase-orders=500,work-orders=250,assets=500,inventory-items=500,vendors=100

``floor`` fetches every page of the five entities over one keep-alive session,
writing each page's body to a file as it arrives, then makes one DuckDB pass
per entity: ``read_json`` over that entity's files, ``data`` unnested into a
fresh table, plus purchase orders' line items as a child table. No fence,
merge, state, spool, or care for types. ``fetch_parse`` is the same fetch with
each page parsed by orjson and nothing written or inserted.

Prints one JSON line, as ``sync_one.py`` does: mode, records (the five entity
tables' rows, as the syncs count them), seconds, records_per_s, peak_rss_mb,
and the split: fetch_seconds, load_seconds, pages, megabytes, line_items.
``--limits`` gives each entity's page size (``benchmarks/sync_benchmark.py``
passes the entity table's); it is an argument so this process need not import
the source package, whose import time the floor does not pay.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from _peak_rss import peak_rss_mb

if TYPE_CHECKING:
    import requests

ENTITY_PATHS = ["purchase-orders", "work-orders", "assets", "inventory-items", "vendors"]
LINE_ITEMS = ("purchase-orders", "line_items", "purchase_order_id")  # entity path, array field, parent column
BODY_CHUNK_BYTES = 1 << 20  # as the sync reads bodies (sources/makini/client.py)
CURSOR_KEY = b'"next_cursor":'


def next_cursor(tail: bytes, page_file: Path) -> str | None:
    """The page's ``next_cursor``, read from the body's last bytes.

    The envelope's paging fields follow ``data`` (docs/makini-api.md), and a key
    inside a record cannot come after them, so the last ``"next_cursor":`` is the
    envelope's. A body laid out otherwise is parsed whole from its file.
    """
    at = tail.rfind(CURSOR_KEY)
    if at < 0:
        return orjson.loads(page_file.read_bytes())["next_cursor"]
    value, _ = json.JSONDecoder().raw_decode(tail[at + len(CURSOR_KEY):].decode().lstrip())
    return value


def fetch_to_files(session: requests.Session, base_url: str, limits: dict[str, int], pages_dir: Path) -> dict:
    """Every page of every entity, each written to ``pages_dir/<entity>/<n>.json`` as it arrives."""
    pages = size = 0
    for path in ENTITY_PATHS:
        folder = pages_dir / path
        folder.mkdir(parents=True)
        cursor, number = None, 0
        while True:
            page_file = folder / f"{number:07d}.json"
            params = {"limit": limits[path], **({"cursor": cursor} if cursor else {})}
            with session.get(f"{base_url}/api/v1/{path}", params=params, stream=True, timeout=60) as response:
                response.raise_for_status()
                tail = b""
                with page_file.open("wb") as out:
                    for chunk in response.iter_content(BODY_CHUNK_BYTES):
                        out.write(chunk)
                        size += len(chunk)
                        tail = tail[-4096:] + chunk
            cursor = next_cursor(tail[-8192:], page_file)
            pages, number = pages + 1, number + 1
            if not cursor:
                break
    return {"pages": pages, "megabytes": round(size / 2**20, 1)}


def fetch_and_parse(session: requests.Session, base_url: str, limits: dict[str, int]) -> dict:
    """Every page of every entity, read as the sync reads a body and parsed by orjson; nothing kept."""
    pages = size = records = 0
    for path in ENTITY_PATHS:
        cursor = None
        while True:
            params = {"limit": limits[path], **({"cursor": cursor} if cursor else {})}
            with session.get(f"{base_url}/api/v1/{path}", params=params, stream=True, timeout=60) as response:
                response.raise_for_status()
                content = b"".join(response.iter_content(BODY_CHUNK_BYTES))
            body = orjson.loads(content)
            records += len(body["data"])
            pages, size = pages + 1, size + len(content)
            cursor = body["next_cursor"]
            if not cursor:
                break
    return {"pages": pages, "megabytes": round(size / 2**20, 1), "records": records}


def load(db: str, pages_dir: Path) -> dict:
    """One DuckDB pass per entity into fresh tables; the line items from the purchase orders' table.

    Type detection samples DuckDB's default 32 files, the fastest pass. A field
    that changes shape later in the walk (an object turning into a list on the
    nulls and drift shapes) fails that pass; the entity is then read again with
    every file sampled (``maximum_sample_files := -1``), as a pipeline that knew
    no better would, inside the clock. ``sampled_all`` names those entities.
    """
    import duckdb  # only the floor needs it: fetch_parse's figures leave it out

    records, sampled_all = 0, []
    with duckdb.connect(db) as con:
        for path in ENTITY_PATHS:
            table = path.replace("-", "_")
            files = str(pages_dir / path / "*.json")
            try:
                con.execute(f"CREATE TABLE {table} AS SELECT unnest(data, max_depth := 2) FROM read_json(?)", [files])
            except duckdb.Error:
                sampled_all.append(path)
                con.execute(f"CREATE TABLE {table} AS SELECT unnest(data, max_depth := 2) "
                            f"FROM read_json(?, maximum_sample_files := -1)", [files])
            records += con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        parent, field, parent_column = LINE_ITEMS
        parent = parent.replace("-", "_")
        columns = {name for (name,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [parent]).fetchall()}
        lines = 0
        if field in columns:
            con.execute(f"CREATE TABLE {parent}__{field} AS SELECT id AS {parent_column}, "
                        f"unnest({field}, max_depth := 2) FROM {parent}")
            con.execute(f"ALTER TABLE {parent} DROP COLUMN {field}")
            lines = con.execute(f"SELECT count(*) FROM {parent}__{field}").fetchone()[0]
    return {"records": records, "line_items": lines, "sampled_all": sampled_all}


def parse_limits(text: str) -> dict[str, int]:
    limits = {name: int(size) for name, _, size in (part.partition("=") for part in text.split(","))}
    missing = set(ENTITY_PATHS) - set(limits)
    if missing:
        raise SystemExit(f"--limits lacks {sorted(missing)}")
    return limits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["floor", "fetch_parse"], required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--db", required=True, help="the DuckDB file (floor); page files go beside it")
    parser.add_argument("--limits", required=True, type=parse_limits, help="entity=page size, comma-separated")
    args = parser.parse_args()
    pages_dir = Path(args.db + ".pages")
    started = time.perf_counter()
    import requests  # inside the clock, as the syncs' imports are (sync_one.py)

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {args.token}"
    if args.mode == "fetch_parse":
        figures = fetch_and_parse(session, args.base_url, args.limits)
        fetched = time.perf_counter()
    else:
        figures = fetch_to_files(session, args.base_url, args.limits, pages_dir)
        fetched = time.perf_counter()
        figures.update(load(args.db, pages_dir))
    seconds = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    shutil.rmtree(pages_dir, ignore_errors=True)  # after the clock: landing the records does not need it
    records = figures.pop("records")
    print(orjson.dumps({"mode": args.mode, "records": records, "seconds": round(seconds, 2),
                        "records_per_s": round(records / seconds) if seconds else 0,
                        "peak_rss_mb": round(peak_mb), "fetch_seconds": round(fetched - started, 2),
                        "load_seconds": round(seconds - (fetched - started), 2), **figures}).decode())


if __name__ == "__main__":
    main()
