"""The error for a batch that cannot load: terminal, so dlt does not retry it."""

from __future__ import annotations

from dlt.common.destination.exceptions import DestinationTerminalException


class MongoDestinationError(DestinationTerminalException):
    """A batch the MongoDB destination cannot load; retrying will not help."""
