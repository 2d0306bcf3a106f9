"""How the entry points turn a failure into a message and an exit code.

0 everything finished; 1 a connection, a walk or the load failed; 2 the
configuration or the command line is wrong.
"""

from __future__ import annotations

import sys
from typing import Optional

from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.pipeline.exceptions import PipelineStepFailed

from makini_sync.run.load_errors import failure_cause
from makini_sync.integrity.lock_backends import WriterLockLost
from makini_sync.integrity.locking import DestinationUnreachable
from makini_sync.run.run_database import DatabaseUnavailable
from sources.makini.errors import ConfigurationError


def failure_exit_code(command: str, exc: BaseException) -> Optional[int]:
    """Print one line for a failure the operator can act on and return its exit code;
    None for anything else (the caller re-raises it)."""
    if isinstance(exc, ConfigurationError):
        message, code = f"configuration error: {exc}", 2
    elif isinstance(exc, ConfigFieldMissingException):
        message, code = f"missing configuration: {exc}", 2
    elif isinstance(exc, (DatabaseUnavailable, DestinationUnreachable, WriterLockLost)):
        message, code = str(exc), 1
    elif isinstance(exc, PipelineStepFailed):
        message, code = f"the {exc.step} step failed: {failure_cause(exc)}", 1
    else:
        return None
    print(f"{command}: {message}", file=sys.stderr)
    return code
