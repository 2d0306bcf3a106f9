"""Errors raised by the Makini source, mirroring the API contract's error table.

    MakiniError
    ├── FatalError                  retrying never helps: fail at once
    │   ├── Unauthorized            401 UNAUTHORIZED
    │   ├── ReauthorizationRequired 401 REAUTHORIZATION_REQUIRED
    │   ├── InvalidCursor           400 INVALID_CURSOR
    │   ├── InvalidRequest          400 INVALID_PARAMETER and other 4xx
    │   ├── NotFound                404 NOT_FOUND
    │   ├── RepeatedCursor          the API handed back a cursor it already gave
    │   ├── MalformedResponse       a 2xx whose body breaks the contract
    │   ├── SystemOffline           GET /api/v1/connection says the system is offline
    │   └── RetriesExhausted        a retriable error outlived the retry budget
    └── RetriableError              wait and try again
        ├── RateLimited             429 RATE_LIMIT_EXCEEDED (carries Retry-After)
        └── Unavailable             500/502/503/504, dropped connections

Every message names the connection, the entity, the request id and what to do
next. Messages are built from the error envelope's code and request id only,
never from request headers, so a token cannot leak through them.
"""

from __future__ import annotations

import copy
from typing import Optional


class ConfigurationError(Exception):
    """The user's configuration is wrong; the message says what to change."""


class MakiniError(Exception):
    hint = "see the Makini API contract"

    def __init__(
        self,
        detail: str,
        *,
        connection: str = "?",
        entity: str = "?",
        request_id: Optional[str] = None,
        status: Optional[int] = None,
        code: Optional[str] = None,
    ) -> None:
        self.detail = detail
        self.connection = connection
        self.entity = entity
        self.request_id = request_id
        self.status = status
        self.code = code
        super().__init__(self._render())

    def _render(self) -> str:
        what = " ".join(str(p) for p in (self.status, self.code) if p)
        where = f"connection {self.connection}, entity {self.entity}"
        rid = f", request id {self.request_id}" if self.request_id else ""
        head = f"{what}: " if what else ""
        return f"{head}{self.detail} ({where}{rid}). {self.hint}"

    def located(self, connection: str, entity: str) -> "MakiniError":
        """The same error, naming the connection and entity it happened on (a copy: one
        error met by several entities, a connection's failed lookup say, names each)."""
        twin = copy.copy(self)
        twin.connection, twin.entity = connection, entity
        twin.args = (twin._render(),)
        return twin


class FatalError(MakiniError):
    pass


class Unauthorized(FatalError):
    hint = "Check the API token configured for this connection (sources.makini.api_token)."


class ReauthorizationRequired(FatalError):
    hint = (
        "The customer's system credentials changed: reconnect the system in Makini, "
        "then configure the new token for this connection."
    )


class InvalidCursor(FatalError):
    hint = "The page cursor expired or is unknown; rerun the sync to restart from the last bookmark."


class InvalidRequest(FatalError):
    hint = "The request was rejected as invalid; check the entity table and options, and report it if it persists."


class NotFound(FatalError):
    hint = "Check sources.makini.base_url and the entity's path in sources/makini/settings.py."


class RepeatedCursor(FatalError):
    hint = "The API returned a cursor it had already returned; stopping to avoid an endless loop. Report this to Makini."


class MalformedResponse(FatalError):
    hint = "The API answered with a body that breaks the contract; report it to Makini with the request id."


class SystemOffline(FatalError):
    hint = ("The customer's system behind this connection is down; the run skips it, and a later run "
            "picks it up from its bookmark once Makini reports it active again.")


class RetriesExhausted(FatalError):
    hint = "The API kept failing past the retry budget; rerun later (the sync resumes from its bookmark)."


class RetriableError(MakiniError):
    hint = "Retrying."


class RateLimited(RetriableError):
    def __init__(self, detail: str, *, retry_after: float = 1.0, **kw) -> None:
        self.retry_after = retry_after
        super().__init__(detail, **kw)


class Unavailable(RetriableError):
    pass


_BY_CODE = {
    "UNAUTHORIZED": Unauthorized,
    "REAUTHORIZATION_REQUIRED": ReauthorizationRequired,
    "INVALID_CURSOR": InvalidCursor,
    "INVALID_PARAMETER": InvalidRequest,
    "NOT_FOUND": NotFound,
    "RATE_LIMIT_EXCEEDED": RateLimited,
}


def error_for_status(status: int, code: Optional[str]) -> type[MakiniError]:
    """The error class for an HTTP error status and the envelope's code."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status == 429:
        return RateLimited
    if status >= 500:
        return Unavailable
    if status == 401:
        return Unauthorized
    if status == 404:
        return NotFound
    return InvalidRequest
