"""Loading one package on a thread of its own while the next one is extracted.

A long sync runs as several load packages. Loading is mostly the database's
own work (DuckDB's inserts and merges release the GIL; PostgreSQL's happen in
the server), and extraction is mostly HTTP and Arrow's parser, so the two fit
side by side on two cores (the full-sync benchmark, benchmarks/sync_benchmark.py,
measured it 7-11% faster than loading after extracting; figures in the
commit that brought it and benchmarks/RESULTS.md).

This drives dlt's ``Load`` step directly rather than calling
``pipeline.load()``: that method reads the pipeline state when it starts and
writes it back when it ends, so run beside an extraction (which saves newer
state) it would put the older cursors back. ``Load`` itself touches only the
normalized packages and the destination. Failures are raised as
``pipeline.load()`` raises them.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import dlt
from dlt.common.runners import pool_runner
from dlt.common.runtime.collector import NULL_COLLECTOR
from dlt.load import Load
from dlt.load.configuration import LoaderConfiguration
from dlt.load.exceptions import LoadPackageAborted
from dlt.pipeline.exceptions import PipelineStepFailed


class BackgroundLoad:
    """Loads the pipeline's normalized packages on a thread; ``wait`` joins it.

    Start it only after ``normalize`` and join it before the next one: the
    step loads every normalized package it finds.
    """

    def __init__(self, pipeline: dlt.Pipeline, workers: Optional[int] = None) -> None:
        self.pipeline = pipeline
        # set up in the caller's thread: the clients are built from the live schema
        client, staging = pipeline._get_destination_clients()
        config = LoaderConfiguration(
            **({"workers": workers} if workers else {}),
            _load_storage_config=pipeline._load_storage_config(),
        )
        self.step = Load(
            pipeline._destination,
            staging_destination=pipeline._staging,
            collector=NULL_COLLECTOR,  # the progress display belongs to the extraction meanwhile
            is_storage_owner=False,
            config=config,
            initial_client_config=client.config,
            initial_staging_client_config=staging.config if staging else None,
        )
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="makini-load", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            pool_runner.run_pool(self.step.config, self.step)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller by wait()
            self.error = exc

    def join(self) -> None:
        """Block until the load is done, whatever its outcome."""
        self.thread.join()

    def wait(self) -> None:
        """Block until the load is done; raise its failure as ``pipeline.load()`` would."""
        self.join()
        exc = self.error
        if exc is None:
            return
        info = self.pipeline._get_step_info(self.step)
        if isinstance(exc, LoadPackageAborted):
            self.pipeline._cleanup_aborted_package(exc.load_id)
            if exc.job_exception is None:
                return
            raise PipelineStepFailed(self.pipeline, "load", exc.load_id, exc.job_exception, info) from exc.job_exception
        load_id: Any = getattr(exc, "load_id", None) or self.step.current_load_id
        raise PipelineStepFailed(self.pipeline, "load", load_id, exc, info) from exc
