"""Load errors in one line: what failed and the database's own words, never a traceback.

dlt reports a failed load job with the job's whole traceback as text, and
logs every retry of a transient one (a DuckDB out-of-memory, a dropped
connection) at WARNING with that text. Operators need the cause in one line;
the tracebacks stay available at DEBUG.
"""

from __future__ import annotations

import logging
import re

# credentials inside a URL (scheme://user:secret@host)
URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")
EXCEPTION_LINE = re.compile(r"^([\w.]+(?:Error|Exception|Exit)): (.+)$")  # "pkg.SomeError: what"
TRACEBACK_NOISE = re.compile(r"^(Traceback|\s*File |\s*\^+\s*$|During handling|The above exception)")
MAX_CAUSE = 500

detail_logger = logging.getLogger("makini_sync.load_detail")


def one_line_cause(text: str) -> str:
    """The last exception line of a traceback text (``DataError: (1406, ...)``), or its last line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip() and not TRACEBACK_NOISE.match(line)]
    raised = [m for m in map(EXCEPTION_LINE.match, lines) if m]
    if raised:
        cause = f"{raised[-1].group(1).rsplit('.', 1)[-1]}: {raised[-1].group(2)}"
    else:
        cause = lines[-1] if lines else "no message"
    return URL_CREDENTIALS.sub(r"\1***@", cause)[:MAX_CAUSE]


def failure_cause(exc: BaseException) -> str:
    """What made a pipeline step fail, in one line: the failing table and the
    database's own error (dlt puts it at the end of a job's traceback text)."""
    inner = getattr(exc, "exception", None) or exc
    message = getattr(inner, "failed_message", None) or str(inner) or type(inner).__name__
    job_id = getattr(inner, "job_id", None)
    table = str(job_id).split(".", 1)[0] if job_id else None
    cause = one_line_cause(message)
    return f"loading {table} failed: {cause}" if table else cause


class OneLineWarnings(logging.Filter):
    """Makes dlt's multi-line warnings and errors one line (the message's first
    sentence and the cause); the whole text goes to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if "\n" not in message and record.exc_info is None:
            return True
        detail_logger.debug("%s", message, exc_info=record.exc_info)
        head = message.split("\n", 1)[0].split(" with message", 1)[0].split("Traceback", 1)[0].rstrip(": ")
        record.msg, record.args, record.exc_info, record.exc_text = f"{head}: {one_line_cause(message)}", (), None, None
        return True


def quiet_dlt_tracebacks() -> None:
    """Install ``OneLineWarnings`` on dlt's logger (once)."""
    dlt_logger = logging.getLogger("dlt")
    if not any(isinstance(f, OneLineWarnings) for f in dlt_logger.filters):
        dlt_logger.addFilter(OneLineWarnings())
