"""Fetch the next page while the current one is converted and written.

HTTP waits and Arrow's JSON parsing release the GIL, so a producer thread one
page ahead overlaps them with the conversion and dlt's writes on the other
core. The producer is bounded (``depth`` pages ahead) and stops when the
consumer does; its exceptions are raised in the consumer, in order.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetched(produce: Callable[[], Iterator[T]], depth: int = 1) -> Iterator[T]:
    """Iterate ``produce()`` in a background thread, at most ``depth`` items ahead."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in produce():
                if not put((True, item)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((False, exc))
            return
        put((True, _DONE))

    thread = threading.Thread(target=run, name="makini-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = items.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=30)
