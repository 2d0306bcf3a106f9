"""One walk's pages, fetched on their own thread ahead of the walk.

HTTP waits and Arrow's JSON parsing release the GIL, so a producer thread a
page ahead overlaps them with the conversion and dlt's writes on the other
core. The feed never blocks its consumer: ``ready`` says whether an item is
waiting, so one consumer can drive many walks and take whichever page came
first (``fleet.py``). The producer is bounded (``depth`` items ahead), its
exceptions reach the consumer in order, and closing the feed cancels it: a
retry it is sleeping in ends at once (``cancellation.py``).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, Optional

from . import cancellation

END = object()  # what ``take`` returns once the producer is done


class PageFeed:
    def __init__(self, produce: Callable[[], Iterator[Any]], depth: int = 1,
                 on_ready: Optional[Callable[[], None]] = None, on_take: Optional[Callable[[], None]] = None) -> None:
        """``on_ready`` runs on the producer's thread when an item arrives, ``on_take`` on
        the consumer's when it takes one."""
        self._items: queue.Queue = queue.Queue(maxsize=depth)
        self._cancel = threading.Event()
        self._on_ready = on_ready or (lambda: None)
        self._on_take = on_take or (lambda: None)
        self._thread = threading.Thread(target=self._run, args=(produce,), name="makini-page-feed", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        """Whether ``take`` would return at once."""
        return not self._items.empty()

    def take(self) -> Any:
        """The next item, ``END`` when the producer is done; raises what it raised."""
        ok, item = self._items.get()
        self._on_take()
        if not ok:
            raise item
        return item

    def close(self, timeout: float = 90.0) -> None:
        """Stop the producer and wait for it: an HTTP request in flight finishes first (its
        timeout is 60 s), so nothing it does lands after the walk's next stretch began."""
        self._cancel.set()
        self._thread.join(timeout=timeout)

    def _run(self, produce: Callable[[], Iterator[Any]]) -> None:
        cancellation.bind(self._cancel)
        try:
            for item in produce():
                if not self._put((True, item)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put((False, exc))
            return
        self._put((True, END))

    def _put(self, item: Any) -> bool:
        while not self._cancel.is_set():
            try:
                self._items.put(item, timeout=0.1)
            except queue.Full:
                continue
            self._on_ready()
            return True
        return False
