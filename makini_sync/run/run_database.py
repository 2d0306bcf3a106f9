"""The DuckDB file a sync run holds open from start to end."""

from __future__ import annotations

from typing import Any, Optional

import duckdb

from makini_sync.destinations.profiles import Profile


class DatabaseUnavailable(Exception):
    """The destination's database cannot be opened (held by another process, say)."""


class RunDatabase:
    """For a DuckDB file, one connection held for the whole run.

    dlt opens the file for each load job and closes it when the last job
    returns it; each close checkpoints (so the staging copies were written
    into the file only to be deleted) and each open reads the catalog again.
    dlt treats a connection it is given as the caller's and never closes it,
    so the run closes it, once, at the end, which makes an incremental run
    faster (benchmarks/sync_benchmark.py). The run holds the file for its whole length: the webhook
    processor opens it per batch, as before, and the dataset lock keeps the
    two apart; another process (the DuckDB CLI, say) cannot open the file
    until the run ends, where before it could between loads.
    """

    def __init__(self, profile: Optional[Profile]) -> None:
        """``profile`` None: the caller's own pipeline, whose database dlt opens."""
        self.profile = profile
        self.connection: Optional[duckdb.DuckDBPyConnection] = None

    def __enter__(self) -> "RunDatabase":
        profile = self.profile
        path = profile.duckdb_file() if profile is not None else None
        if profile is not None and path is not None:
            try:
                self.connection = profile.open_duckdb()
            except duckdb.Error as exc:
                raise DatabaseUnavailable(
                    f"cannot open the DuckDB file {path}: {exc} (if another process holds it, "
                    "close that process or run the sync when it is done)"
                ) from None
            self.profile = profile.with_settings(credentials=self.connection)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.connection is not None:
            self.connection.close()
