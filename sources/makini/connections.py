"""The connections a sync reads: one bearer token each, resolved from dlt config."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import orjson

from datetime import timedelta

from .client import MakiniClient, RetryPolicy, located
from .breaker import Breaker
from .completeness import CompletenessBound, read_bound
from .connections_file import ConnectionEntry
from .pacing import Pacer
from .errors import ConfigurationError, MakiniError, ReauthorizationRequired, SystemOffline

logger = logging.getLogger(__name__)


def parse_tokens(api_token: Any) -> list[str]:
    """One token, a list of tokens, or a JSON list in a string (as env vars give)."""
    if isinstance(api_token, str):
        text = api_token.strip()
        if text.startswith("["):
            try:
                api_token = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise ConfigurationError(
                    "sources.makini.api_token looks like a JSON list but is not valid JSON; "
                    'write it as ["token-a", "token-b"]'
                ) from None
        else:
            api_token = [text]
    if not isinstance(api_token, (list, tuple)) or not api_token:
        raise ConfigurationError(
            "sources.makini.api_token must be a token or a list of tokens "
            "(env SOURCES__MAKINI__API_TOKEN, or .dlt/secrets.toml)"
        )
    tokens = [str(t).strip() for t in api_token]
    if any(not t for t in tokens):
        raise ConfigurationError("sources.makini.api_token contains an empty token")
    return tokens


@dataclass
class Connection:
    """One Makini connection. Its id comes from ``GET /api/v1/connection``;
    until then it is named by its position, never by its token."""

    position: int
    client: MakiniClient
    id: Optional[str] = None
    system: Optional[str] = None
    error: Optional[MakiniError] = field(default=None, repr=False)
    bound: Optional[CompletenessBound] = field(default=None, repr=False)
    breaker: Breaker = field(default_factory=Breaker, repr=False)  # shared by copies: one per run
    entry: Optional[ConnectionEntry] = field(default=None, repr=False)  # from a connections file
    _reading_bound: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.id or (self.entry.name if self.entry else f"#{self.position}")

    def serves(self, table: str) -> bool:
        """Whether this connection's entry (if any) asks for ``table``."""
        return self.entry is None or self.entry.entities is None or table in self.entry.entities

    def identify(self) -> str:
        """The connection's id, fetched once; raises the connection's error if any."""
        if self.error is not None:
            raise self.error
        if self.id is None:
            try:
                info = self.client.get_json("/api/v1/connection")
                if not isinstance(info, dict) or not isinstance(info.get("id"), str):
                    raise MakiniError("GET /api/v1/connection returned no connection id")
            except Exception as exc:  # noqa: BLE001 - every failure becomes a MakiniError
                self.error = located(exc, self.name, "connection")
                raise self.error from None
            self.id, self.system = info["id"], info.get("system")
            self._trip_if_down(info.get("status"))
        return self.id

    def _trip_if_down(self, status: Any) -> None:
        """A connection Makini reports offline or needing reauthorization is not walked:
        its list requests would only fail, after minutes of retries."""
        if status == "offline":
            self.breaker.record(SystemOffline(
                "GET /api/v1/connection reports the system offline", connection=self.name, entity="connection"))
        elif status == "reauthorization_required":
            self.breaker.record(ReauthorizationRequired(
                "GET /api/v1/connection reports reauthorization_required", connection=self.name,
                entity="connection", code="REAUTHORIZATION_REQUIRED"))


    def completeness(self, lookback: Optional[timedelta]) -> CompletenessBound:
        """The connection's completeness bound, read once (``completeness.py``)."""
        with self._reading_bound:  # the connection's walks start side by side: one read
            if self.bound is None:
                self.bound = read_bound(self.client, self.name, lookback)
        return self.bound


def identify_all(connections: Sequence[Connection], concurrency: int) -> list["str | MakiniError"]:
    """Each connection's id, or the error that says why it has none, asked side
    by side: one request each, waiting on the network, so a fleet's lookups
    cost about one round trip per ``concurrency`` connections."""
    if not connections:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(connections)))) as pool:
        return list(pool.map(_identified, connections))


def _identified(connection: Connection) -> "str | MakiniError":
    try:
        return connection.identify()
    except MakiniError as exc:
        return exc


def open_connections(base_url: str, api_token: Any, policy: RetryPolicy,
                     entries: Optional[Sequence[ConnectionEntry]] = None) -> list[Connection]:
    """One connection per token of ``api_token``, or per entry of a connections file."""
    if not base_url or not str(base_url).startswith(("http://", "https://")):
        raise ConfigurationError(
            "sources.makini.base_url must be an http(s) URL, e.g. https://api.makini.io "
            "(env SOURCES__MAKINI__BASE_URL)"
        )
    if entries is None:
        entries = [ConnectionEntry(f"#{i + 1}", token) for i, token in enumerate(parse_tokens(api_token))]
        named = False
    else:
        named = True
    connections = []
    for i, entry in enumerate(entries):
        breaker = Breaker()  # the client stops retrying once the connection's breaker trips
        client = MakiniClient(str(base_url), entry.token, policy, breaker, Pacer(entry.rate_budget))
        connections.append(Connection(position=i + 1, client=client, breaker=breaker,
                                      entry=entry if named else None))
    return connections
