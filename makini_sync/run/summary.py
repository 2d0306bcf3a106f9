"""The closing summary a sync prints for the operator."""

from __future__ import annotations

from makini_sync.run.sync import SyncResult


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
    for failure in result.report.failures:
        lines.append(f"  FAILED {failure}")
    for connection, breaker in sorted(result.report.skipped.items()):
        lines.append(f"  SKIPPED connection {connection}: {', '.join(breaker.skipped)} not walked, "
                     f"after {type(breaker.cause).__name__} on {breaker.cause.entity}")
    return "\n".join(lines)


def failure_line(result: SyncResult) -> str:
    failed = result.report.failed_connections
    return (
        f"makini sync failed for {len(failed)} connection(s) ({', '.join(failed)}); "
        "the other connections were loaded. See the FAILED lines above."
    )
