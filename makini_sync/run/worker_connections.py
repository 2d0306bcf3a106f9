"""The connections one worker syncs, identified before it takes their locks."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional

import dlt

from sources.makini.client import RetryPolicy
from sources.makini.connections import Connection, open_connections, parse_tokens
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


def identified_connections(base_url: Optional[str], api_token: Any, selection: WorkerSelection,
                           policy: RetryPolicy, report: SyncReport) -> WorkerConnections:
    """This worker's share of the configured tokens, each identified (``GET
    /api/v1/connection``). A connection that cannot be identified is reported
    failed and left out: its rows cannot be locked, so they are not written."""
    base_url = base_url if base_url is not None else dlt.config.get("sources.makini.base_url")
    api_token = api_token if api_token is not None else dlt.secrets.get("sources.makini.api_token")
    configured = parse_tokens(api_token)
    mine = selection.pick(configured)
    found = WorkerConnections(str(base_url))
    if not mine:
        logger.warning("%s holds none of the %d configured connections: nothing to sync",
                       selection.label, len(configured))
        return found
    opened = open_connections(base_url, mine, policy)
    # one request each, waiting on the network: asked side by side, so a fleet's lookups
    # cost about one round trip per IDENTIFY_CONCURRENCY connections, and one slow system no more
    with ThreadPoolExecutor(max_workers=min(IDENTIFY_CONCURRENCY, len(opened))) as pool:
        answers = list(pool.map(_identify, opened))
    for token, connection, answer in zip(mine, opened, answers, strict=True):
        if isinstance(answer, MakiniError):
            report.fail(answer)
            continue
        found.ids.append(answer)
        found.tokens.append(token)
        found.opened.append(connection)
    return found


IDENTIFY_CONCURRENCY = 16


def _identify(connection: Connection) -> "str | MakiniError":
    """The connection's id, or the error that says why it has none (``Connection.identify``
    turns every failure into a MakiniError naming the connection)."""
    try:
        return connection.identify()
    except MakiniError as exc:
        return exc
