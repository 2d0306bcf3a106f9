"""One writer per destination dataset at a time.

The version fence reads stored versions and then loads; two writers (a cron
sync and the webhook processor) interleaving those steps could let a stale
version in. Writers take this lock around "read versions, load". It is a file
lock under dlt's data dir, so writers must share a host (the usual deployment:
cron and the webhook service on one machine); the README says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from pathlib import Path
from typing import Iterator

import dlt

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def dataset_lock(destination_name: str, dataset: str = "makini") -> Iterator[None]:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{destination_name}.{dataset}")
    path = Path(dlt.current.run_context().data_dir) / "locks" / f"{safe}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("another writer holds %s; waiting for it", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0), handle.truncate(), handle.write(str(os.getpid())), handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
