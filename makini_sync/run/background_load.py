"""Loading one package on a thread of its own while the next one is extracted.

A long sync runs as several load packages. Loading is mostly the database's
own work (DuckDB's inserts and merges release the GIL; PostgreSQL's happen in
the server), and extraction is mostly HTTP and Arrow's parser, so the two fit
side by side on two cores, faster than loading after extracting
(benchmarks/sync_benchmark.py).

This drives dlt's ``Load`` step directly rather than calling
``pipeline.load()``, through the seam (``sources/makini/dlt_seam.py`` says why).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, ContextManager, Optional

import dlt

from sources.makini import dlt_seam


class BackgroundLoad:
    """Loads the pipeline's normalized packages on a thread; ``wait`` joins it.

    Start it only after ``normalize`` and join it before the next one: the
    step loads every normalized package it finds.
    """

    def __init__(self, pipeline: dlt.Pipeline, workers: Optional[int] = None,
                 around: Callable[[], ContextManager[Any]] = contextlib.nullcontext) -> None:
        """``around``: what the load runs inside, on its thread (the dataset's load lock),
        so the lock is held for the load alone, not the extraction beside it."""
        self.pipeline = pipeline
        self.around = around
        self.step = dlt_seam.load_step(pipeline, workers)  # in the caller's thread
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="makini-load", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with self.around():
                dlt_seam.run_load_step(self.step)
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
        dlt_seam.raise_load_failure(self.pipeline, self.step, exc)
