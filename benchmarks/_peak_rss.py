"""A benchmark process's own peak RSS.

``getrusage``'s ``ru_maxrss`` is not it for a process started by another: Linux
carries the parent's resident size at the fork over the exec, so a child of
``sync_benchmark.py`` never reports less than that parent's RSS (about 118 MB
with dlt imported, whatever the child used). ``VmHWM`` is the high-water mark
of the process's own memory since its exec.
"""

from __future__ import annotations

import os
import resource
from typing import Optional


def peak_rss_mb() -> float:
    own = _high_water_mb("self")
    if own is not None:
        return own
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux; a fallback elsewhere


def children_peak_rss_mb() -> float:
    """The peak RSS of this process's children still running, summed (a sync's page workers
    are gone by its end and counted apart; multiprocessing's resource tracker stays)."""
    try:
        children = [pid for task in os.listdir("/proc/self/task")
                    for pid in open(f"/proc/self/task/{task}/children").read().split()]
    except OSError:
        return 0.0
    return sum(_high_water_mb(pid) or 0.0 for pid in children)


def _high_water_mb(pid: str) -> Optional[float]:
    """``VmHWM`` of /proc/<pid> in MB; None where there is none (gone, or not Linux)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None
