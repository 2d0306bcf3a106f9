"""A benchmark process's own peak RSS.

``getrusage``'s ``ru_maxrss`` is not it for a process started by another: Linux
carries the parent's resident size at the fork over the exec, so a child of
``sync_benchmark.py`` never reports less than that parent's RSS (about 118 MB
with dlt imported, whatever the child used). ``VmHWM`` is the high-water mark
of the process's own memory since its exec.
"""

from __future__ import annotations

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
