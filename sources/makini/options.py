"""The source's knobs that only the sync and reconcile set.

A user's own pipeline passes what it knows (base url, tokens or connections,
entities, lookback) to ``makini_source``; everything the run machinery tunes
per extraction travels in one ``SourceOptions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .fleet import DEFAULT_CONCURRENCY

if TYPE_CHECKING:
    from .client import RetryPolicy
    from .entity_config import EntityRegistry
    from .page_workers import PageWorkers
    from .report import SyncReport
    from .walk import Fence
    from .walk_outcomes import WalkOutcomes


@dataclass(frozen=True)
class SourceOptions:
    report: Optional["SyncReport"] = None  # what the run saw; default: a new one
    retry_policy: Optional["RetryPolicy"] = None  # default: RetryPolicy()
    # drops rows the destination already holds at the same or a newer version (makini_sync.integrity.fence)
    fence: Optional["Fence"] = None
    # ends the extraction once that many rows are in it; unfinished walks are in
    # outcomes.unfinished and resume on the next extraction
    max_rows_per_load: Optional[int] = None
    # ... and once that many seconds passed with rows in it: fetched rows wait no longer for their load
    max_seconds_per_load: Optional[float] = None
    documents: bool = False  # keep child rows and nested objects inside each record (document stores)
    # only these (connection id, table) walks: the unfinished ones of an earlier extraction of the run
    only: Optional[frozenset] = None
    backfill: bool = False  # walk every record again, whatever the bookmark says (reconcile)
    spool_root: Optional[str] = None  # page checkpoints there (spool.py); None: off
    registry: Optional["EntityRegistry"] = None  # entities and field names; default: entity_config.load_registry()
    # table -> column -> type at the destination, for columns the pipeline's schema lacks (column_kinds.py)
    stored_kinds: Optional[dict] = None
    # the destination's text cannot hold U+0000 (PostgreSQL): such text lands as bytes in a variant column
    text_without_nul: bool = False
    collect_versions: bool = False  # note every (id, updated_at) seen and which walks were whole (reconcile)
    dry_run: bool = False  # walk and report, yield nothing, leave the bookmarks as they were
    # (connection, table) -> {id: updated_at} the destination holds: a backfill does not load them again
    stored_versions: Optional[dict] = None
    concurrency: int = DEFAULT_CONCURRENCY  # walks waiting on the network at once (fleet.py)
    outcomes: Optional["WalkOutcomes"] = None  # what the walks tell the run; default: a new one
    # worker processes that prepare pages Arrow's reader refused (page_workers.py); None: the walks do
    page_workers: Optional["PageWorkers"] = None
