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
from collections import deque
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union

import pyarrow as pa

from .body_page import BodyPage
from .records import PageConverter, Prepared
from .spool import SpooledPage
from .settings import Entity

logger = logging.getLogger(__name__)

def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


# one worker beside the sync's own process where there is a second core: a second worker
# costs its interpreter's memory again for little more speed (benchmarks/sync_variants.py)
DEFAULT_CONVERSION_PROCESSES = 1 if _cores() > 1 else 0
# pages a walk has in a worker beyond the one it waits for: its next page is prepared while
# the walk lands this one (benchmarks/sync_variants.py --shape drift_int64)
PREPARED_AHEAD = 1
# refused pages a run meets before it starts its workers: a run with a handful (an incremental
# one) would pay a worker's start-up, about a second of the other core, for nothing
START_AFTER_PAGES = 8
CLOSE_SECONDS = 10.0  # how long closing waits for a worker to exit before it is killed


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
        except Exception as exc:  # noqa: BLE001 - a worker died, the pool shut down: the usual path
            self._workers._fail(exc)
            return self.page.records()
        return self.page.records() if prepared is None else PreparedPage(self.page, prepared)


class PageWorkers:
    """Up to ``processes`` worker processes, started once a run met ``START_AFTER_PAGES`` refused pages."""

    def __init__(self, processes: int) -> None:
        if processes < 0:
            raise ValueError(f"conversion processes must be 0 or more, not {processes}")
        self.processes = processes
        self._executor: Optional[concurrent.futures.ProcessPoolExecutor] = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._failed = False
        self._refused = 0
        self.peak_rss_mb = 0.0  # the workers' peak resident memory, summed (known once closed)

    def submit(self, page: BodyPage, entity: Entity, connection_id: str, documents: bool) -> "Preparing":
        """Start preparing the page in a worker (when one is ready); ``Preparing.result`` waits for it."""
        self._refused += 1
        executor = self._started() if self._refused >= START_AFTER_PAGES else self._executor
        if executor is None or not self._ready.is_set():
            return Preparing(page, None, self)
        try:
            return Preparing(page, executor.submit(_prepare, page.data, entity, connection_id, documents), self)
        except Exception as exc:  # noqa: BLE001 - a worker died, the pool shut down: the usual path
            self._fail(exc)
            return Preparing(page, None, self)

    def wait_ready(self, timeout: float) -> bool:
        """Start the workers now and wait until they take pages; False if they did not in time."""
        return self._started() is not None and self._ready.wait(timeout)

    def close(self) -> None:
        """Stop the workers (every walk is done with them). One that never took a page is
        stopped at once: it may be stuck importing a main module that runs a sync itself."""
        with self._lock:
            executor, self._executor, self._failed = self._executor, None, True
        if executor is None:
            return
        # the pool's own processes: multiprocessing.active_children() would include other pools'
        processes = list((getattr(executor, "_processes", None) or {}).values())
        self.peak_rss_mb = sum(process_peak_rss_mb(process.pid) for process in processes)
        executor.shutdown(wait=False, cancel_futures=True)
        if not self._ready.is_set():
            for process in processes:
                process.terminate()
        deadline = time.monotonic() + CLOSE_SECONDS
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1)

    def __enter__(self) -> "PageWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _started(self) -> Optional[concurrent.futures.ProcessPoolExecutor]:
        if self.processes == 0 or self._failed:
            return None
        with self._lock:
            if self._executor is None and not self._failed:
                try:
                    # spawned, not forked: the sync's process runs threads, which a fork would copy mid-step
                    self._executor = concurrent.futures.ProcessPoolExecutor(
                        self.processes, mp_context=multiprocessing.get_context("spawn"),
                        initializer=_start_worker)
                    self._executor.submit(_started).add_done_callback(self._on_started)
                except Exception as exc:  # noqa: BLE001 - no process to be had (a limit, memory): the usual path
                    self._fail(exc)
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


def pages_ready(pages: Iterator[Any], workers: Optional[PageWorkers], entity: Entity, connection_id: str,
                documents: bool) -> Iterator[Any]:
    """A walk's pages (and anything else it fetches, passed on as is) with those that came as
    the text of their records parsed, or prepared by ``workers``, in page order; a worker
    prepares the walk's next page meanwhile (``PREPARED_AHEAD``). The caller spools what this
    yields, so a page that does not parse is never spooled: its error reaches the walk after
    the pages before it, and nothing after it does."""
    waiting: deque[tuple[SpooledPage, Optional[Preparing]]] = deque()
    while True:
        try:
            page = next(pages)
        except StopIteration:
            break
        except Exception:
            while waiting:  # the pages fetched before a failed request, then its error
                yield _finished(*waiting.popleft())
            raise
        preparing = None
        if isinstance(page, SpooledPage) and isinstance(page.records, BodyPage) and workers is not None:
            preparing = workers.submit(page.records, entity, connection_id, documents)
        if preparing is None or not preparing.in_worker:
            while waiting:  # a page no worker has goes on at once, after those before it
                yield _finished(*waiting.popleft())
            yield _finished(page, preparing) if isinstance(page, SpooledPage) else page
            continue
        waiting.append((page, preparing))
        if len(waiting) > PREPARED_AHEAD:
            yield _finished(*waiting.popleft())
    while waiting:
        yield _finished(*waiting.popleft())


def _finished(page: SpooledPage, preparing: Optional[Preparing]) -> SpooledPage:
    if isinstance(page.records, BodyPage):
        page.body = page.records
        page.records = preparing.result() if preparing is not None else page.body.records()
        if isinstance(page.records, PreparedPage):
            page.path = f"{page.path}+worker"
    return page


def _started() -> bool:
    return True


def _start_worker() -> None:
    """In a worker: freed memory goes back to the system, as in the sync's process
    (``makini_sync/run/sync.release_memory_eagerly``: Arrow's default pool keeps it), and
    the worker leaves with its parent."""
    pa.set_memory_pool(pa.system_memory_pool())
    _leave_with_parent()


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


def _prepare(data: bytes, entity: Entity, connection_id: str, documents: bool) -> Optional[Prepared]:
    """In a worker: the records parsed and their tables prepared; None when anything is wrong
    with them, which the walk's usual path then reports with the page's request."""
    try:
        records = BodyPage(data).records()
        return PageConverter(entity, connection_id, documents=documents).prepare(records)
    except Exception:  # noqa: BLE001 - the walk's own path meets the same page and names the error
        return None


def process_peak_rss_mb(pid: Optional[int]) -> float:
    """A process's high-water mark of resident memory (``VmHWM``), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
