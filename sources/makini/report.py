"""What a run saw per connection and entity: pages, records, failures."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import MakiniError

if TYPE_CHECKING:
    import pyarrow as pa

    from .breaker import Breaker

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    pages: Counter = field(default_factory=Counter)  # (connection, table) -> pages
    records: Counter = field(default_factory=Counter)  # (connection, table) -> records yielded
    unchanged: Counter = field(default_factory=Counter)  # (connection, table) -> versions read again, not loaded
    failures: list[MakiniError] = field(default_factory=list)
    paths: Counter = field(default_factory=Counter)  # pages by conversion path (client.Page.path, or "rows")
    schema_changes: list = field(default_factory=list)  # column_kinds.SchemaChange, in the order seen
    set_aside: list = field(default_factory=list)  # pending_packages.SetAside: packages that failed twice
    skipped: dict = field(default_factory=dict)  # connection -> its tripped breaker.Breaker
    # reconcile's evidence (EntityWalk.collect_versions): (connection, table) -> Arrow tables of
    # (id, updated_at) seen; which walks were whole is in walk_outcomes.WalkOutcomes
    versions: dict = field(default_factory=dict)

    def saw_versions(self, connection: str, table: str, versions: "pa.Table") -> None:
        self.versions.setdefault((connection, table), []).append(versions)

    def schema_changed(self, changes: list) -> None:
        self.schema_changes.extend(changes)

    def log_schema_changes(self) -> None:
        """One WARNING line for the run's schema changes, if any."""
        if not self.schema_changes:
            return
        shown = ", ".join(f"{c.table_name}.{c.column_name} ({c.change})" for c in self.schema_changes[:5])
        more = len(self.schema_changes) - 5
        logger.warning(
            "schema changed: %d new column(s) or variant(s): %s%s; recorded in _makini_schema_changes",
            len(self.schema_changes), shown, f" and {more} more" if more > 0 else "",
        )

    def page(self, connection: str, table: str, records: int) -> None:
        self.pages[(connection, table)] += 1
        self.records[(connection, table)] += records

    def fail(self, error: MakiniError) -> None:
        logger.error("%s", error)
        self.failures.append(error)

    def skip(self, connection: str, table: str, breaker: "Breaker") -> None:
        """A walk not begun: the connection's breaker tripped earlier in the run."""
        if not breaker.skipped:
            logger.error("skipping the rest of connection %s: %s", connection, breaker.cause)
        if table not in breaker.skipped:
            breaker.skipped.append(table)
        self.skipped[connection] = breaker

    @property
    def failed_connections(self) -> list[str]:
        return sorted({f.connection for f in self.failures} | set(self.skipped))
