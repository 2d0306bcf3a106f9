"""``makini_source`` in a dlt pipeline of your own, with the sync's guarantees.

``pipeline.run(makini_source(...))`` loads the records, but three guarantees
live around the loads, not in the source: the version fence (a stale version
never overwrites a newer row), line-item pruning (the lines of a superseded
order version go) and the tombstone sweep (hard deletes stay deleted). They
need the destination before and after each load, which a dlt source never
sees. ``sync_in_pipeline`` runs the source in your pipeline through the same
package loop as ``python -m pipelines.sync``, so all three hold, along with
the writer lock, crash recovery of pending packages, and page checkpoints.
"""

from __future__ import annotations

from typing import Any, Optional

import dlt
from dlt.common.destination import TLoaderFileFormat

from makini_sync.destinations.profiles import profile_for
from makini_sync.run.sync import SyncResult, run_sync


def sync_in_pipeline(pipeline: dlt.Pipeline, *, documents: Optional[bool] = None,
                     loader_file_format: Optional[TLoaderFileFormat] = None, **options: Any) -> SyncResult:
    """Sync Makini into ``pipeline``'s destination and dataset.

    ``options`` are ``run_sync``'s: ``base_url``, ``api_token``, ``entities``,
    ``full_refresh``, ``retry_policy``, ... (unset, base URL and tokens come from
    dlt config as for ``makini_source``). ``documents``: the destination is a
    document store (default: only the project's MongoDB destination is).
    """
    profile = profile_for(pipeline, documents, loader_file_format)
    return run_sync(profile, pipeline=pipeline, **options)
