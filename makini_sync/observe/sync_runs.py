"""``_makini_sync_runs``: one row per connection and table for every sync run.

What the status view (``status.py``) reads from any host: when each walk last
succeeded, how many records it loaded, the connection's completeness bound
(Makini's ``last_successful_sync_at``) the walk saw, and the last error.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Optional, Sequence

from sources.makini.bookmark import parse_iso
from sources.makini.dlt_seam import source_resources_state
from sources.makini.report import SyncReport

from makini_sync.destinations.profiles import Profile
from makini_sync.observe.run_records import append_records

SYNC_RUNS_TABLE = "_makini_sync_runs"
SYNC_RUNS_PIPELINE = "makini_sync_runs"
COLUMNS = {"makini_synced_at": {"data_type": "timestamp", "nullable": True},  # null in most runs, or all
           "error": {"data_type": "text", "nullable": True}}


def run_rows(report: SyncReport, pipeline: Any, connection_ids: Sequence[str], tables: Sequence[str],
             started: datetime, finished: datetime, worker: str) -> list[dict[str, Any]]:
    """The run's row per (connection, table) walked or meant to be, and one per connection
    that could not be identified (table ``*``)."""
    run_id = uuid.uuid4().hex
    common = {"run_id": run_id, "pipeline_name": pipeline.pipeline_name, "worker": worker,
              "started_at": started, "finished_at": finished}
    failures = {(f.connection, f.entity): _one_line(str(f)) for f in report.failures}
    resources = source_resources_state(pipeline)
    rows = []
    for connection_id in connection_ids:
        breaker = report.skipped.get(connection_id)
        for table in tables:
            error = failures.get((connection_id, table))
            skipped = breaker is not None and table in breaker.skipped
            status = "failed" if error else "skipped" if skipped else "ok"
            if breaker is not None and skipped and not error:
                error = f"not walked after {type(breaker.cause).__name__} on {breaker.cause.entity}"
            bookmark = resources.get(table, {}).get("bookmarks", {}).get(connection_id, {})
            rows.append({**common, "connection_id": connection_id, "table_name": table, "status": status,
                         "records": int(report.records.get((connection_id, table), 0)),
                         "pages": int(report.pages.get((connection_id, table), 0)),
                         "makini_synced_at": _moment(bookmark.get("completeness_bound")), "error": error})
    known = set(connection_ids)
    for (connection, _entity), error in failures.items():
        if connection not in known:  # a connection that never answered: its id is unknown
            rows.append({**common, "connection_id": connection, "table_name": "*", "status": "failed",
                         "records": 0, "pages": 0, "makini_synced_at": None, "error": error})
    return rows


def record_sync_run(profile: Profile, rows: list[dict[str, Any]], via: Optional[Profile] = None) -> None:
    """``via``: the profile to write through (``run_records.append_records``)."""
    append_records(profile, SYNC_RUNS_TABLE, rows, SYNC_RUNS_PIPELINE, columns=COLUMNS, via=via)


def _moment(text: Any) -> Any:
    return parse_iso(text) if isinstance(text, str) else None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
