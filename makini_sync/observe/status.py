"""The fleet's status, read from what the sync records in the destination
(``_makini_sync_runs``), so it works from any host; plus what this host holds
locally: pending and set-aside load packages, the webhook inbox.

Per connection and table: the last successful walk (when, records loaded),
freshness against Makini's ``last_successful_sync_at`` as that walk saw it,
and the last error if a later run failed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import dlt

from sources.makini.errors import ConfigurationError

from makini_sync.destinations.profiles import DATASET_NAME, Profile, make_pipeline
from makini_sync.observe.sync_runs import SYNC_RUNS_TABLE
from makini_sync.run.destination_session import is_missing_table
from makini_sync.workers.naming import sync_pipeline_prefix

COLUMNS = ("connection_id", "table_name", "status", "records", "makini_synced_at", "finished_at", "error")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text or "")
    if not match:
        raise ConfigurationError(f"--stale-after {text!r}: write a number with s, m, h or d, e.g. 30m or 2h")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@dataclass
class TableStatus:
    connection_id: str
    table: str
    last_ok_at: Optional[datetime] = None  # when the last successful walk finished
    records: int = 0  # records that walk loaded
    makini_synced_at: Optional[datetime] = None  # Makini's last sync of the source system, as that walk saw it
    last_error: Optional[str] = None  # from a run after the last success
    failing: bool = False

    def freshness(self) -> Optional[datetime]:
        """What the warehouse holds is current up to here."""
        return self.makini_synced_at or self.last_ok_at


def table_statuses(rows: list[tuple]) -> list[TableStatus]:
    """Per (connection, table), from the recorded rows (any order)."""
    latest: dict[tuple[str, str], TableStatus] = {}
    for connection_id, table, status, records, synced, finished, error in sorted(rows, key=lambda r: _utc(r[5])):
        entry = latest.setdefault((connection_id, table), TableStatus(connection_id, table))
        if status == "ok":
            entry.last_ok_at, entry.records, entry.makini_synced_at = _utc(finished), int(records or 0), _utc(synced)
            entry.last_error, entry.failing = None, False
        else:
            entry.last_error, entry.failing = error or status, True
    return list(latest.values())


def read_sync_runs(profile: Profile) -> list[tuple]:
    if profile.documents:
        from makini_sync.destinations.mongodb.connection import get_client

        database: Any = get_client(str(dlt.secrets[f"destination.{profile.name}.credentials"])) \
            .get_default_database(default=DATASET_NAME)
        return [tuple(doc.get(c) for c in COLUMNS) for doc in database[SYNC_RUNS_TABLE].find({})]
    pipeline = make_pipeline(profile, "makini_status")
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return []
        columns = ", ".join(client.escape_column_name(c) for c in COLUMNS)
        try:
            rows = client.execute_sql(f"SELECT {columns} FROM {client.make_qualified_table_name(SYNC_RUNS_TABLE)}")
            return [tuple(r) for r in rows or []]
        except Exception as exc:  # noqa: BLE001 - no run recorded yet
            if is_missing_table(exc):
                return []
            raise


def local_packages(profile_name: str) -> dict[str, dict[str, int]]:
    """This host's pipelines of the profile: load packages pending and set aside."""
    data_dir = Path(dlt.current.run_context().data_dir)
    prefix = sync_pipeline_prefix(profile_name, DATASET_NAME)
    found: dict[str, dict[str, int]] = {}
    for pipeline_dir in sorted((data_dir / "pipelines").glob(f"{prefix}*")):
        pending = [*(pipeline_dir / "normalize" / "extracted").glob("*"), *(pipeline_dir / "load" / "normalized").glob("*")]
        aside = list((data_dir / "makini_set_aside_packages" / pipeline_dir.name).glob("*"))
        if pending or aside:
            found[pipeline_dir.name] = {"pending": len(pending), "set_aside": len(aside)}
    return found


def inbox_counts(location: Any) -> Optional[dict]:
    """The webhook inbox's gauges: a SQLite file's (None when there is none) or a JetStream stream's."""
    from makini_sync.webhooks.inbox_url import JetStreamAddress

    if isinstance(location, JetStreamAddress):
        from makini_sync.webhooks.jetstream_inbox import read_counts

        return read_counts(location)
    if location is None or not Path(location).exists():
        return None
    from makini_sync.webhooks.inbox import Inbox

    return Inbox(location).counts()


def _utc(moment: Any) -> datetime:
    if moment is None:
        return datetime.min.replace(tzinfo=timezone.utc)
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def as_json(statuses: list[TableStatus], now: datetime, packages: dict, inbox: Optional[dict]) -> dict:
    def plain(entry: TableStatus) -> dict:
        row = asdict(entry)
        for key in ("last_ok_at", "makini_synced_at"):
            row[key] = row[key].isoformat() if row[key] else None
        fresh = entry.freshness()
        row["age_seconds"] = (now - fresh).total_seconds() if fresh else None
        return row

    return {"tables": [plain(s) for s in statuses], "packages": packages, "inbox": inbox}
