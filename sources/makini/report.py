"""What a run saw per connection and entity: pages, records, failures."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from .errors import MakiniError

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    pages: Counter = field(default_factory=Counter)  # (connection, table) -> pages
    records: Counter = field(default_factory=Counter)  # (connection, table) -> records yielded
    failures: list[MakiniError] = field(default_factory=list)
    unfinished: set = field(default_factory=set)  # (connection, table) walks to go on with

    def page(self, connection: str, table: str, records: int) -> None:
        self.pages[(connection, table)] += 1
        self.records[(connection, table)] += records

    def fail(self, error: MakiniError) -> None:
        logger.error("%s", error)
        self.failures.append(error)

    @property
    def failed_connections(self) -> list[str]:
        return sorted({f.connection for f in self.failures})
