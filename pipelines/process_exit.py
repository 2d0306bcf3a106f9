"""Ending a one-shot command's process without taking its interpreter apart.

When a sync returns, the interpreter's own shutdown would free, one object at a
time, everything the run imported and built (dlt's schemas and configuration,
Arrow, DuckDB): a cron job waits for that and nothing needs it
(``benchmarks/sync_variants.py``, exit variants). By then the run has closed what it
opened. What the interpreter would still do that matters is done here: other
threads that are not daemons are waited for, exit handlers run (logging's flush
among them), and the output is flushed; then the process ends with the code.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Exit with ``code`` as ``sys.exit`` would, minus the interpreter's teardown."""
    # what the interpreter calls first at exit: thread pools are told to finish (dlt keeps
    # some), then every thread that is not a daemon is waited for
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()  # CPython's own call for the exit handlers, as at shutdown
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken pipe: nothing more to say
            stream.flush()
    os._exit(code)
