"""The connections one worker syncs, identified before it takes their locks."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import dlt

from sources.makini.client import RetryPolicy
from sources.makini.connections import Connection, identify_all, open_connections, parse_tokens
from sources.makini.connections_file import ConnectionEntry, configured_file, read_connections_file
from sources.makini.fleet import DEFAULT_CONCURRENCY
from sources.makini.errors import MakiniError
from sources.makini.report import SyncReport

from makini_sync.workers.selection import WorkerSelection

logger = logging.getLogger(__name__)


@dataclass
class WorkerConnections:
    base_url: str
    tokens: list[str] = field(default_factory=list)  # the worker's connections that answered, in config order
    ids: list[str] = field(default_factory=list)  # their Makini connection ids
    opened: list[Connection] = field(default_factory=list)  # identified, for the source to walk
    labels: dict[str, str] = field(default_factory=dict)  # id -> name (and label) from a connections file
    fields: dict[str, dict] = field(default_factory=dict)  # id -> table -> field names from a connections file


def identified_connections(base_url: Optional[str], api_token: Any, selection: WorkerSelection,
                           policy: RetryPolicy, report: SyncReport,
                           concurrency: int = DEFAULT_CONCURRENCY,
                           connections_file: Optional[str] = None) -> WorkerConnections:
    """This worker's share of the configured connections, each identified (``GET
    /api/v1/connection``). A connection that cannot be identified is reported
    failed and left out: its rows cannot be locked, so they are not written.
    The connections are ``api_token``'s if given, else a connections file's
    (``connections_file`` or dlt config's), else ``sources.makini.api_token``'s."""
    base_url = base_url if base_url is not None else dlt.config.get("sources.makini.base_url")
    entries = configured_entries(api_token, connections_file)
    chosen = set(selection.pick([e.token for e in entries]))
    mine = [e for e in entries if e.token in chosen]
    found = WorkerConnections(str(base_url))
    if not mine:
        logger.warning("%s holds none of the %d configured connections: nothing to sync",
                       selection.label, len(entries))
        return found
    named = api_token is None and configured_file(connections_file) is not None
    opened = open_connections(base_url, None, policy, mine) if named else \
        open_connections(base_url, [e.token for e in mine], policy)
    answers = identify_all(opened, concurrency)
    for entry, connection, answer in zip(mine, opened, answers, strict=True):
        if isinstance(answer, MakiniError):
            report.fail(answer)
            continue
        if answer in found.ids:  # two tokens (or entries) of one connection: walked once
            logger.warning("connection %s is configured twice (%s); syncing it once", answer, entry.name)
            continue
        found.ids.append(answer)
        found.tokens.append(entry.token)
        found.opened.append(connection)
        if named:
            found.labels[answer] = entry.shown_as
            if entry.fields:
                found.fields[answer] = entry.fields
    return found


def configured_entries(api_token: Any, connections_file: Optional[str]) -> list[ConnectionEntry]:
    if api_token is None:
        path = configured_file(connections_file)
        if path is not None:
            return read_connections_file(path)
        api_token = dlt.secrets.get("sources.makini.api_token")
    return [ConnectionEntry(f"#{i + 1}", token) for i, token in enumerate(parse_tokens(api_token))]
