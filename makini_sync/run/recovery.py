"""Mending the one crash window dlt leaves in its own storage.

dlt's normalize commits a package by renaming it into the load storage and
then deleting the extracted copy ("do not kill this process" in its log). A
``kill -9`` between the two leaves both, and the next normalize tries to
commit the same package again and fails with "Directory not empty" (seen in
the crash harness). The renamed package is complete (the rename is atomic),
so the extracted leftover is dropped before anything is normalized.

dlt's first normalize also creates the load storage folder by folder; a kill
in between leaves it without ``normalized`` (seen in the crash harness), and
listing a missing folder raises. A missing folder holds no packages.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import dlt

from sources.makini.dlt_seam import drop_extracted_package

logger = logging.getLogger(__name__)


def drop_committed_extractions(pipeline: dlt.Pipeline) -> list[str]:
    """Delete extracted packages that normalize already committed; their ids."""
    committed = packages(pipeline.list_normalized_load_packages) | packages(pipeline.list_completed_load_packages)
    leftovers = sorted(packages(pipeline.list_extracted_load_packages) & committed)
    for load_id in leftovers:
        logger.warning("package %s was normalized before a crash; dropping its extracted copy", load_id)
        drop_extracted_package(pipeline, load_id)
    return leftovers


def packages(listing: Callable[[], Sequence[str]]) -> set[str]:
    """The package ids a dlt storage listing returns; none if the folder was never made."""
    try:
        return set(listing())
    except FileNotFoundError:
        return set()
