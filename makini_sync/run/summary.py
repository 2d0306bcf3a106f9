"""The closing summary a sync prints for the operator."""

from __future__ import annotations

from makini_sync.run.sync import SyncResult
from sources.makini.report import SyncReport


def render_summary(result: SyncResult) -> str:
    lines = [
        f"makini sync into {result.destination}: {result.seconds:.1f} s",
        f"  pipeline {result.pipeline_name}: {result.connections} connection(s); "
        f"waited {result.lock_wait_seconds:.1f} s for other writers"
        + (f"; {result.adopted} bookmark(s) taken over from other pipelines" if result.adopted else ""),
        f"  {'table':<32}{'loaded':>10}{'inserted':>10}{'updated':>10}{'unchanged':>10}{'total':>10}",
    ]
    for table, s in result.tables.items():
        lines.append(f"  {table:<32}{s.loaded:>10}{s.inserted:>10}{s.updated:>10}{s.unchanged:>10}{s.total:>10}")
    changes = result.report.schema_changes
    if changes:
        lines.append(f"  schema changes: {len(changes)} new column(s) or variant(s), in makini._makini_schema_changes")
    for package in result.report.set_aside:
        lines.append(f"  SET ASIDE load package {package.load_id} ({package.cause}): its data was fetched again;"
                     f" kept at {package.kept_at}")
    lines.extend(connection_lines(result.report, result.labels))
    return "\n".join(lines)


def connection_lines(report: SyncReport, labels: dict[str, str]) -> list[str]:
    """One line per connection that failed or was skipped: a fleet's summary stays readable.
    ``labels``: connection id -> its name in a connections file."""
    failures: dict[str, list] = {}
    for failure in report.failures:
        failures.setdefault(failure.connection, []).append(failure)
    lines = []
    for connection in sorted(set(failures) | set(report.skipped)):
        breaker = report.skipped.get(connection)
        first, *rest = failures.get(connection) or [breaker.cause if breaker is not None else None]
        named = f" [{labels[connection]}]" if connection in labels else ""
        line = f"  FAILED connection {connection}{named}: {first}"
        if rest:
            line += f"; also failed: {', '.join(f'{f.entity} ({type(f).__name__})' for f in rest)}"
        if breaker is not None and breaker.skipped:
            line += f"; skipped after it: {', '.join(breaker.skipped)}"
        lines.append(line)
    return lines


def failure_line(result: SyncResult) -> str:
    failed = result.report.failed_connections
    return (
        f"makini sync failed for {len(failed)} connection(s) ({', '.join(failed)}); "
        "the other connections were loaded. See the FAILED lines above."
    )
