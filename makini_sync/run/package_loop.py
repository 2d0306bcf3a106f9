"""The loop of one sync run: extract a package, load it, tidy after the load,
and again while walks are unfinished."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

import dlt

from sources.makini import makini_source
from sources.makini.dlt_seam import source_resources_state
from sources.makini.options import SourceOptions
from sources.makini.walk_outcomes import WalkOutcomes
from sources.makini.settings import Entity
from sources.makini.spool import settle_spools
from sources.makini.walk import committed_positions

from makini_sync.run.background_load import BackgroundLoad
from makini_sync.run.destination_session import after_load, destination_session, normalized_row_counts
from makini_sync.integrity.fence import fenced_table_names
from makini_sync.destinations.profiles import Profile
from makini_sync.integrity.locking import WriterLocks
from makini_sync.workers.full_refresh import refresh_own_rows


class PackageLoop:
    """Extractions of at most ``max_rows_per_load`` rows, each loaded as one package.

    A package loads on a thread (``BackgroundLoad``) while the next one is
    extracted when that extraction reads nothing the load writes: no version
    fence (the tables did not exist before the run) and not a document store.
    Otherwise each load finishes before the next extraction starts. After each
    load the spools are trimmed to what is still to load, and the tables mended
    and counted (``after_load``).

    After ``run``: ``loaded`` (rows per table), ``before`` and ``after`` (row
    counts at the start and after the last load).
    """

    def __init__(
        self,
        pipeline: dlt.Pipeline,
        profile: Profile,
        entities: Sequence[Entity],
        source_args: dict[str, Any],
        options: SourceOptions,
        spool_root: Path,
        full_refresh: bool = False,
        locks: Optional[WriterLocks] = None,
        connection_ids: Sequence[str] = (),
    ) -> None:
        self.pipeline, self.profile, self.entities = pipeline, profile, list(entities)
        self.source_args, self.options, self.spool_root = source_args, options, spool_root
        assert options.outcomes is not None  # the run goes on from what the extractions left
        self.outcomes: WalkOutcomes = options.outcomes
        self.full_refresh = full_refresh
        self.locks, self.connection_ids = locks, list(connection_ids)
        self.tables = [name for e in entities for name in e.tables]
        self.loaded: Counter = Counter()
        self.before: dict[str, int] = {}
        self.after: dict[str, int] = {}
        self.existing: set[str] = set()  # tables at the destination before the run
        self.fenced: set[str] = set()  # tables the version fence reads
        self.stored_kinds: dict = {}  # column types at the destination before the run

    def run(self) -> None:
        only: Optional[frozenset] = None
        if self.full_refresh:
            with self._load_lock():
                refresh_own_rows(self.pipeline, self.profile, self.entities, self.connection_ids)
        loading: Optional[BackgroundLoad] = None
        try:
            while True:
                self._extract(only)
                if loading is not None:  # the previous package, loaded while this one was extracted
                    loading.wait()
                    with self._load_lock():
                        loading, self.after = None, self._tidy(schema_ahead=True)
                self.pipeline.normalize()
                self.loaded.update(normalized_row_counts(self.pipeline))
                if self.outcomes.unfinished and not self.fenced and not self.profile.documents:
                    loading = BackgroundLoad(self.pipeline, self.profile.load_workers, around=self._load_lock)
                else:
                    with self._load_lock():
                        self.profile.load(self.pipeline)
                        self.after = self._tidy()
                if not self.outcomes.unfinished:
                    return
                only = self.outcomes.take_unfinished()
        finally:
            if loading is not None:  # a failure meanwhile: never close the database under a load
                loading.join()

    def _load_lock(self) -> Any:
        """The dataset's load lock (``integrity/locking.py``) around a load and its tidying."""
        return self.locks.loading() if self.locks is not None else contextlib.nullcontext()

    def _extract(self, only: Optional[frozenset]) -> None:
        """One extraction; the first one learns what the destination holds."""
        first = only is None
        with destination_session(self.pipeline, self.profile, fenced_table_names(self.entities), first,
                                 needed=first or bool(self.fenced)) as session:
            if first:
                self.existing = session.existing
                self.before = session.counts(self.tables)
                # after a full refresh this worker's rows are gone, and its connections' locks keep others out
                self.fenced = set() if self.full_refresh else self.existing
                self.stored_kinds = session.column_kinds(self.tables)
            options = dataclasses.replace(self.options, fence=session.fence(self.fenced), only=only,
                                          stored_kinds=self.stored_kinds)
            source = makini_source(**self.source_args, options=options)
            self.pipeline.extract(source, loader_file_format=self.profile.loader_file_format)

    def _tidy(self, schema_ahead: bool = False) -> dict[str, int]:
        """After a load: trim the spools, mend, count. ``schema_ahead``: the
        next package was extracted meanwhile, so the pipeline's schema names
        tables not loaded yet and the destination is asked which exist."""
        settle_spools(self.spool_root, committed_positions(source_resources_state(self.pipeline)))
        if self.profile.documents:
            return {}
        known = None if schema_ahead else self.existing
        return after_load(self.pipeline, self.entities, known, self.tables)
