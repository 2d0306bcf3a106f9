"""A connection's circuit breaker.

A failure that retrying cannot mend (a revoked token, a system that kept
failing past the retry budget) would otherwise be met again by every later
entity of the connection, each waiting out its own budget while the fleet
waits. After the first such failure the rest of the run skips the connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .errors import MakiniError, ReauthorizationRequired, RetriesExhausted, SystemOffline, Unauthorized

# what trips the breaker: the token is refused, the system is reported offline,
# or the API kept failing past the retry budget
TRIPS = (Unauthorized, ReauthorizationRequired, SystemOffline, RetriesExhausted)


@dataclass
class Breaker:
    cause: Optional[MakiniError] = None
    skipped: list[str] = field(default_factory=list)  # tables not walked because of it

    @property
    def open(self) -> bool:
        return self.cause is not None

    def record(self, error: MakiniError) -> None:
        if self.cause is None and isinstance(error, TRIPS):
            self.cause = error
