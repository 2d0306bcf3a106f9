"""Ending a one-shot command's process without taking its interpreter apart.

When a sync returns, the interpreter's own shutdown would free, one object at a
time, everything the run imported and built (dlt's schemas and configuration,
Arrow, DuckDB): a cron job waits for that and nothing needs it
(``benchmarks/sync_variants.py``, exit variants). By then the run has closed what it
opened. What the interpreter would still do that matters is done here: other
threads that are not daemons are waited for, exit handlers run (logging's flush
among them), and the output is flushed; then the process ends with the code, or
with 120 as the interpreter would when the output could not be written.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


# the interpreter's own exit code when it cannot flush standard output at exit
UNWRITTEN_OUTPUT = 120


def exit_now(code: int) -> NoReturn:
    """Exit with ``code`` as ``sys.exit`` would, minus the interpreter's teardown."""
    # what the interpreter calls first at exit: thread pools are told to finish (dlt keeps
    # some), then every thread that is not a daemon is waited for
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()  # CPython's own call for the exit handlers, as at shutdown
    try:
        sys.stdout.flush()
    except Exception as exc:  # noqa: BLE001 - a full disk, a closed pipe: the output is lost, say so
        with contextlib.suppress(Exception):
            print(f"could not write the output: {exc}", file=sys.stderr)
        code = code or UNWRITTEN_OUTPUT
    with contextlib.suppress(Exception):  # nowhere left to report a failure of stderr itself
        sys.stderr.flush()
    os._exit(code)
