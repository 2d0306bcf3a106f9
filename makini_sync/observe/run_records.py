"""Rows appended to a table of the destination that records runs (the sync's, reconcile's).

They go through a small pipeline of their own, append only, under the
dataset's load lock, so every host that can read the destination can read them.
"""

from __future__ import annotations

from typing import Any, Optional

import dlt

from makini_sync.destinations.profiles import DATASET_NAME, Profile, make_pipeline
from makini_sync.integrity.locking import WriterLocks, holder_name
from makini_sync.workers.naming import writer_pipeline_name


def append_records(profile: Profile, table: str, rows: list[dict[str, Any]], pipeline_kind: str,
                   columns: Optional[dict[str, Any]] = None, via: Optional[Profile] = None) -> None:
    """``columns``: dlt column hints, for columns that may hold only nulls in a run.
    ``via``: the profile to write through (a run's open DuckDB connection); the
    dataset's lock is always ``profile``'s, which knows the database's file."""
    if not rows:
        return
    pipeline = make_pipeline(via or profile, writer_pipeline_name(pipeline_kind, profile.name, DATASET_NAME))
    with WriterLocks(profile, DATASET_NAME, holder_name(pipeline.pipeline_name), pipeline) as locks, locks.loading():
        pipeline.extract(dlt.resource(rows, name=table, write_disposition="append", columns=columns),
                         loader_file_format=profile.loader_file_format)
        pipeline.normalize()
        profile.load(pipeline)
