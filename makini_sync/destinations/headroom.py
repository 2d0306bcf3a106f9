"""Whole-table statements on a memory-capped DuckDB.

The DuckDB profile caps DuckDB's memory (destinations.toml) so a sync's RSS stays flat.
dlt's merges are bounded by the rows of one load, but the post-load integrity
statements (pruning superseded line items, sweeping tombstoned rows) join whole
tables: at a few million line items the prune needs more than the cap, and
DuckDB answers with an out-of-memory error instead of spilling
(tests/test_headroom.py shows it on a small cap).
Such a statement is retried once with the cap raised for it, then the cap is
put back, so a large warehouse costs a short memory peak, not a failed sync.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

logger = logging.getLogger(__name__)

HEADROOM_MEMORY_LIMIT = "2GB"


def is_duckdb_out_of_memory(client: Any, exc: BaseException) -> bool:
    return "duckdb" in type(client).__module__ and "Out of Memory Error" in str(exc)


def execute_with_headroom(client: Any, sql: str, *args: Any) -> Any:
    """``client.execute_sql(sql, *args)``; on DuckDB running out of its memory
    cap, once more with the cap at ``HEADROOM_MEMORY_LIMIT``."""
    try:
        return client.execute_sql(sql, *args)
    except Exception as exc:  # noqa: BLE001 - only DuckDB's out-of-memory is retried
        if not is_duckdb_out_of_memory(client, exc):
            raise
    (limit,) = client.execute_sql("SELECT current_setting('memory_limit')")[0]
    logger.warning(
        "DuckDB's memory limit (%s) is too small for a whole-table statement; running it with %s",
        limit, HEADROOM_MEMORY_LIMIT,
    )
    client.execute_sql(f"SET memory_limit = '{HEADROOM_MEMORY_LIMIT}'")
    try:
        return client.execute_sql(sql, *args)
    finally:
        with contextlib.suppress(Exception):  # buffers still held: the cap returns when the connection closes
            client.execute_sql(f"SET memory_limit = '{limit}'")
