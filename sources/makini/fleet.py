"""Walks side by side: many connections and entities waiting on the network at once.

A fleet's wall time is the sum of its requests' latency when walks go one
after another. Here each walk's pages come from its own feed thread
(``page_feed.py``) and one consumer per entity takes whichever page arrived
first, so conversion and loading stay on the threads they ran on before while
up to ``concurrency`` walks, across every entity of the extraction, wait on
the network together. A walk's own cursor chain stays sequential.

A walk that has no page yet yields ``WAITING``; a consumer with nothing
ready yields ``None``, which dlt's round-robin extraction reads as "ask
another resource" (``dlt.extract.pipe_iterator``), so one entity's slow walk
never holds another entity's pages.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generator, Iterator, Optional

from .fleet_progress import FleetProgress
from .page_feed import PageFeed

WAITING = object()  # a walk's next page has not arrived yet
PAUSED = object()  # next_page: stopped waiting, the extraction is ending
_NO_MORE = object()

# walks at once across an extraction: enough to hide a remote API's latency behind the
# conversions, few enough that threads and buffered pages stay bounded (benchmarks/fleet_benchmark.py)
DEFAULT_CONCURRENCY = 32
_IDLE_WAIT_SECONDS = 0.05


class Fleet:
    """The walks of one extraction: how many fetch at once, and their feeds."""

    def __init__(self, concurrency: int = DEFAULT_CONCURRENCY, progress: Optional[FleetProgress] = None) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self.progress = progress if progress is not None else FleetProgress(None, (), 0)
        self._free = concurrency
        self._feeds: set[PageFeed] = set()
        self._changed = threading.Condition()
        self.pages_taken = 0  # by the walks' consumers, which all run on the extraction's thread

    def try_start(self) -> bool:
        """Take a slot for one walk, if one is free."""
        with self._changed:
            if self._free == 0:
                return False
            self._free -= 1
            return True

    def release(self) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify_all()

    def feed(self, produce: Callable[[], Iterator[Any]]) -> PageFeed:
        """Start fetching a walk's pages; ``close`` it when the walk ends."""
        feed = PageFeed(produce, on_ready=self._page_arrived, on_take=self._page_taken)
        with self._changed:
            self._feeds.add(feed)
        return feed

    def close(self, feed: PageFeed) -> None:
        with self._changed:
            self._feeds.discard(feed)
        feed.close()

    def wait(self, want_slot: bool, timeout: float = _IDLE_WAIT_SECONDS) -> None:
        """Until some walk's page is ready or (``want_slot``) a slot is free, at most ``timeout``."""
        with self._changed:
            self._changed.wait_for(lambda: want_slot and self._free > 0 or any(f.ready for f in self._feeds),
                                   timeout)

    def _page_taken(self) -> None:
        self.pages_taken += 1

    def _page_arrived(self) -> None:
        with self._changed:
            self._changed.notify_all()


def next_page(feed: PageFeed, give_up: Callable[[], bool] = lambda: False) -> Generator[Any, None, Any]:
    """``page = yield from next_page(feed)``: yields ``WAITING`` until the feed has an
    item, or returns ``PAUSED`` when ``give_up()`` says to stop waiting."""
    while not feed.ready:
        if give_up():
            return PAUSED
        yield WAITING
    return feed.take()


def interleaved(walks: Iterator[Optional[Callable[[], Iterator[Any]]]], fleet: Fleet) -> Iterator[Any]:
    """Run the walks ``walks`` starts, side by side within ``fleet``'s slots.

    ``walks`` yields a function that starts one walk (a generator of items
    and ``WAITING``), or ``None`` for a walk it decided to skip. Each round
    takes one step of every active walk, so a walk with pages always at hand
    does not starve the others. Yields items, and ``None`` when nothing is
    ready even after waiting briefly for a page: when every resource yields
    ``None`` dlt's iterator sleeps, so a page that ends the wait is taken
    first.
    """
    active: list[Iterator[Any]] = []
    starts_left = True
    waited = False  # the last round found nothing and waited for a page or a slot
    try:
        while starts_left or active:
            while starts_left and fleet.try_start():
                start = next(walks, _NO_MORE)
                if start is None or start is _NO_MORE:
                    fleet.release()
                    starts_left = start is None
                    continue
                active.append(start())  # type: ignore[operator]
            progressed, taken = False, fleet.pages_taken
            for walk in list(active):
                try:
                    item = next(walk)
                except StopIteration:
                    active.remove(walk)
                    fleet.release()
                    fleet.progress.walk_done()
                    progressed = True
                    continue
                if item is not WAITING:
                    progressed = True
                    yield item
            if progressed or fleet.pages_taken != taken:  # a page taken into a batch yields nothing yet
                waited = False
            elif active or starts_left:
                if waited:
                    # the wait ended on another entity's page, a free slot or the timeout: let dlt
                    # ask the other resources; a round of Nones costs a sleep in dlt's iterator
                    waited = False
                    yield None
                fleet.wait(want_slot=starts_left)
                waited = True
    finally:
        for walk in active:
            walk.close()  # type: ignore[attr-defined]
            fleet.release()
