"""Which loader file format loads Makini data into PostgreSQL fastest?

    python benchmarks/postgres_formats.py --purchase-orders 20000

Syncs the same sandbox into a fresh `makini` schema once per format and
prints the seconds and records/s of each. Needs the PostgreSQL server
(DESTINATION__POSTGRES__CREDENTIALS, default postgresql://postgres:postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from makini_sandbox import Sandbox  # noqa: E402
from makini_sync.destinations.profiles import load_profile  # noqa: E402
from makini_sync.run.sync import run_sync  # noqa: E402

URL = os.environ.setdefault("DESTINATION__POSTGRES__CREDENTIALS", "postgresql://postgres:postgres@127.0.0.1:5432/test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--purchase-orders", type=int, default=20_000)
    parser.add_argument("--formats", default="insert_values,csv,parquet")
    args = parser.parse_args()
    sizes = {"purchase-orders": args.purchase_orders, "work-orders": 2000, "assets": 1000,
             "inventory-items": 2000, "vendors": 200}
    with Sandbox(seed=1, sizes=sizes, connections=1, rate_limit_per_minute=10**9) as sandbox:
        for fmt in args.formats.split(","):
            with psycopg.connect(URL, autocommit=True) as conn:
                for schema in ("makini", *(r[0] for r in conn.execute(  # every pipeline's own staging too
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'makini_staging%'"))):
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            os.environ["DLT_DATA_DIR"] = tempfile.mkdtemp()
            profile = load_profile("postgres")
            profile = type(profile)(profile.name, profile.destination, fmt, profile.settings,
                                    profile.documents, profile.credentials_settings)
            started = time.perf_counter()
            try:
                result = run_sync(profile, base_url=sandbox.base_url, api_token=sandbox.tokens)
            except Exception as exc:  # noqa: BLE001 - a format the destination refuses
                print(f"{fmt:<14} not usable: {type(exc).__name__}: {str(exc).splitlines()[0][:150]}")
                continue
            seconds = time.perf_counter() - started
            records = sum(result.report.records.values())
            print(f"{fmt:<14} {records:>8} records {seconds:>7.2f} s {records / seconds:>9.0f} rec/s")


if __name__ == "__main__":
    main()
