"""The connections a sync reads: one bearer token each, resolved from dlt config."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import orjson

from datetime import timedelta

from .client import MakiniClient, RetryPolicy, located
from .breaker import Breaker
from .completeness import CompletenessBound, read_bound
from .errors import ConfigurationError, MakiniError

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

    @property
    def name(self) -> str:
        return self.id or f"#{self.position}"

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
        return self.id


    def completeness(self, lookback: Optional[timedelta]) -> CompletenessBound:
        """The connection's completeness bound, read once (``completeness.py``)."""
        if self.bound is None:
            self.bound = read_bound(self.client, self.name, lookback)
        return self.bound


def open_connections(base_url: str, api_token: Any, policy: RetryPolicy) -> list[Connection]:
    if not base_url or not str(base_url).startswith(("http://", "https://")):
        raise ConfigurationError(
            "sources.makini.base_url must be an http(s) URL, e.g. https://api.makini.io "
            "(env SOURCES__MAKINI__BASE_URL)"
        )
    return [
        Connection(position=i + 1, client=MakiniClient(str(base_url), token, policy))
        for i, token in enumerate(parse_tokens(api_token))
    ]
