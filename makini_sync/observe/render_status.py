"""The status view for a terminal: one line per connection, problems first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Optional

from makini_sync.observe.status import TableStatus

MAX_HEALTHY_LINES = 20  # healthy connections beyond these are counted, not listed


@dataclass
class ConnectionStatus:
    connection_id: str
    tables: list[TableStatus] = field(default_factory=list)

    @property
    def failing(self) -> list[TableStatus]:
        return [t for t in self.tables if t.failing]

    def age(self, now: datetime) -> Optional[timedelta]:
        """How old its stalest table is (None: a table never synced)."""
        moments = [t.freshness() for t in self.tables]
        if not moments or any(m is None for m in moments):
            return None
        return now - min(m for m in moments if m is not None)

    def stale(self, now: datetime, after: Optional[timedelta]) -> bool:
        age = self.age(now)
        return after is not None and (age is None or age > after)


def by_connection(statuses: list[TableStatus]) -> list[ConnectionStatus]:
    grouped: dict[str, ConnectionStatus] = {}
    for entry in statuses:
        grouped.setdefault(entry.connection_id, ConnectionStatus(entry.connection_id)).tables.append(entry)
    return list(grouped.values())


def render(profile: str, connections: list[ConnectionStatus], now: datetime, stale_after: Optional[timedelta],
           packages: dict, inbox: Optional[dict]) -> str:
    def order(c: ConnectionStatus) -> tuple:
        age = c.age(now)
        return (not c.failing, not c.stale(now, stale_after), -(age.total_seconds() if age else float("inf")))

    ranked = sorted(connections, key=order)
    failing = sum(1 for c in ranked if c.failing)
    stale = sum(1 for c in ranked if c.stale(now, stale_after))
    limit = f" (older than {_age(stale_after)})" if stale_after else ""
    lines = [f"makini status of destination {profile}: {len(ranked)} connection(s), {failing} failing, "
             f"{stale} stale{limit}",
             f"  {'connection':<24}{'tables':>7}  {'synced up to':<17}{'age':>9}{'records':>10}  problem"]
    healthy_shown = 0
    for c in ranked:
        problem = c.failing or c.stale(now, stale_after)
        if not problem:
            if healthy_shown >= MAX_HEALTHY_LINES:
                continue
            healthy_shown += 1
        age = c.age(now)
        oldest = min((f for f in (t.freshness() for t in c.tables) if f is not None), default=None)
        failed = c.failing[0] if c.failing else None
        note = f"FAILED {failed.table}: {failed.last_error}" if failed else ("STALE" if problem else "")
        lines.append(f"  {c.connection_id[:23]:<24}{len(c.tables) - len(c.failing):>3}/{len(c.tables):<3}  "
                     f"{oldest.strftime('%Y-%m-%d %H:%M') if oldest else 'never':<17}{_age(age):>9}"
                     f"{sum(t.records for t in c.tables):>10}  {note[:120]}")
    hidden = sum(1 for c in ranked if not (c.failing or c.stale(now, stale_after))) - healthy_shown
    if hidden > 0:
        lines.append(f"  ... and {hidden} more healthy connection(s) (--json lists every table)")
    for name, counts in packages.items():
        lines.append(f"  this host, pipeline {name}: {counts['pending']} load package(s) pending, "
                     f"{counts['set_aside']} set aside")
    if inbox is not None and inbox.get("error"):
        lines.append(f"  webhook inbox: unknown ({inbox['error']})")
    elif inbox is not None:
        lines.append(f"  webhook inbox: {inbox['pending']} pending ({inbox['failing']} failing), "
                     f"{inbox['dead']} dead letter(s), lag {inbox['lag_seconds']:.0f} s")
    return "\n".join(lines)


def _age(age: Optional[timedelta]) -> str:
    if age is None:
        return "never"
    seconds = int(age.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"
