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


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux; a fallback elsewhere


def children_peak_rss_mb() -> float:
    """The peak RSS of this process's children still running, summed (a sync's page workers
    are gone by its end and counted apart; multiprocessing's resource tracker stays)."""
    total = 0.0
    try:
        children = [pid for task in os.listdir("/proc/self/task")
                    for pid in open(f"/proc/self/task/{task}/children").read().split()]
    except OSError:
        return 0.0
    for pid in children:
        try:
            with open(f"/proc/{pid}/status") as status:
                total += next((int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")), 0.0)
        except OSError:
            pass  # gone meanwhile
    return total
