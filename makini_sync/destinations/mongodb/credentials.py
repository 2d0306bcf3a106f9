"""The ``mongodb://`` URI as dlt credentials, and how it may appear in a log line.

The URI carries the password, so nothing here ever prints its user info.
"""

from __future__ import annotations

import re
from typing import Any

from dlt.common.configuration import configspec
from dlt.common.configuration.specs import CredentialsConfiguration
from dlt.common.typing import TSecretStrValue


def redact_uri(uri: str) -> str:
    """The URI with any user info replaced, fit for a log line."""
    return re.sub(r"//[^/@]*@", "//***@", uri)


@configspec
class MongoDBCredentials(CredentialsConfiguration):
    """A ``mongodb://`` (or ``mongodb+srv://``) URI, given as one string in
    ``destination.mongodb.credentials``. ``str()`` never shows user info."""

    # dlt's configspec idiom: None until resolved; Optional[...] would make the field optional
    connection_string: TSecretStrValue = None  # type: ignore[assignment]

    def parse_native_representation(self, native_value: Any) -> None:
        if isinstance(native_value, str):
            self.connection_string = native_value
        else:
            super().parse_native_representation(native_value)

    def to_native_representation(self) -> str:
        return self.connection_string

    def __str__(self) -> str:
        return redact_uri(self.connection_string or "").split("?")[0]
