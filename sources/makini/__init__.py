"""A dlt source for the Makini unified API: ``makini_source`` (``source.py``).

The package imports nothing until asked: what converts a page (``records.py``)
runs in page workers too (``page_workers.py``), and a worker that imported dlt
with the package would hold tens of megabytes it never uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .source import makini_source

__all__ = ["makini_source"]


def __getattr__(name: str) -> Any:
    if name == "makini_source":
        from .source import makini_source

        return makini_source
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
