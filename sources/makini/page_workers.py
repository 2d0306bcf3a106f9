"""Pages Arrow's JSON reader refused, parsed and prepared in worker processes.

Such a page (values whose types drift, integers beyond 64 bits) is parsed by
orjson and converted from Python objects, which holds the GIL: on the drift
shapes one core did the whole extraction while the other idled
(benchmarks/sync_benchmark.py). A worker process parses the body and prepares
the page's tables (``PageConverter.prepare``, which needs nothing from earlier
pages); the walk lands them on its column kinds (``PageConverter.land``), in
page order, as it would have.

The workers only ever make a page faster, never different: while they start,
after one failed, or for a page a worker declines (a body that does not parse,
a record the converter rejects), the page is parsed in the sync's own process
and takes the walk's usual path, which reports what is wrong.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Optional, Union

from .body_page import BodyPage
from .records import PageConverter, Prepared
from .settings import Entity

logger = logging.getLogger(__name__)

# one worker beside the sync's own process where there is a second core: a second worker
# costs its interpreter's memory again for little more speed (benchmarks/sync_variants.py)
DEFAULT_CONVERSION_PROCESSES = 1 if len(os.sched_getaffinity(0)) > 1 else 0


@dataclass(frozen=True)
class PreparedPage:
    """A refused page a worker parsed and prepared; ``page`` is kept for the walk's usual path."""

    page: BodyPage
    prepared: Prepared


class Preparing:
    """A page on its way through a worker, or not sent to one (``future`` None)."""

    def __init__(self, page: BodyPage, future: Optional[concurrent.futures.Future], workers: "PageWorkers") -> None:
        self.page, self._future, self._workers = page, future, workers

    @property
    def in_worker(self) -> bool:
        return self._future is not None

    def result(self) -> Union[PreparedPage, list]:
        """The page prepared by a worker, or its records parsed here (the walk's usual path)."""
        if self._future is None:
            return self.page.records()
        try:
            prepared = self._future.result()
        except (BrokenProcessPool, OSError, RuntimeError) as exc:  # a worker died, or the pool shut down
            self._workers._fail(exc)
            return self.page.records()
        return self.page.records() if prepared is None else PreparedPage(self.page, prepared)


class PageWorkers:
    """Up to ``processes`` worker processes, started with the first refused page."""

    def __init__(self, processes: int) -> None:
        if processes < 0:
            raise ValueError(f"conversion processes must be 0 or more, not {processes}")
        self.processes = processes
        self._executor: Optional[concurrent.futures.ProcessPoolExecutor] = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._failed = False
        self.peak_rss_mb = 0.0  # the workers' peak resident memory, summed (known once closed)

    def submit(self, page: BodyPage, entity: Entity, connection_id: str, documents: bool) -> "Preparing":
        """Start preparing the page in a worker (when one is ready); ``Preparing.result`` waits for it."""
        executor = self._started()
        if executor is None or not self._ready.is_set():
            return Preparing(page, None, self)
        try:
            return Preparing(page, executor.submit(_prepare, page.body, entity, connection_id, documents), self)
        except (BrokenProcessPool, RuntimeError) as exc:  # a worker died, or the pool is shut down
            self._fail(exc)
            return Preparing(page, None, self)

    def wait_ready(self, timeout: float) -> bool:
        """Start the workers now and wait until they take pages; False if they did not in time."""
        return self._started() is not None and self._ready.wait(timeout)

    def close(self) -> None:
        """Stop the workers; pages still on their way get their answers first."""
        with self._lock:
            executor, self._executor, self._failed = self._executor, None, True
        if executor is not None:
            self.peak_rss_mb = sum(_peak_rss_mb(process.pid) for process in multiprocessing.active_children())
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "PageWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _started(self) -> Optional[concurrent.futures.ProcessPoolExecutor]:
        if self.processes == 0 or self._failed:
            return None
        with self._lock:
            if self._executor is None and not self._failed:
                # spawned, not forked: the sync's process runs threads, which a fork would copy mid-step
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_leave_with_parent)
                self._executor.submit(_started).add_done_callback(self._on_started)
            return self._executor

    def _on_started(self, future: concurrent.futures.Future) -> None:
        if future.cancelled() or future.exception() is not None:
            self._fail(future.exception() if not future.cancelled() else RuntimeError("cancelled"))
        else:
            self._ready.set()

    def _fail(self, exc: Optional[BaseException]) -> None:
        if not self._failed:
            logger.warning("page conversion workers stopped (%s); pages are converted in the sync's process",
                           type(exc).__name__)
        self._failed = True


def _started() -> bool:
    return True


def _leave_with_parent() -> None:
    """In a worker: exit when the sync's process is gone (a kill -9 included). A pool's worker
    holds its own end of the task queue, so it would wait on it for ever."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="makini-page-worker-parent", daemon=True).start()


def _prepare(body: bytes, entity: Entity, connection_id: str, documents: bool) -> Optional[Prepared]:
    """In a worker: the body parsed and its tables prepared; None when anything is wrong
    with it, which the walk's usual path then reports with the page's request."""
    try:
        records = BodyPage(body).records()
        return PageConverter(entity, connection_id, documents=documents).prepare(records)
    except Exception:  # noqa: BLE001 - the walk's own path meets the same page and names the error
        return None


def _peak_rss_mb(pid: Optional[int]) -> float:
    """A worker's high-water mark of resident memory (``VmHWM``), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
