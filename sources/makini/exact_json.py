"""JSON in and out without rounding: orjson, and the standard library for integers beyond 64 bits.

orjson is several times faster, but it reads an integer beyond 64 bits as a
float (rounded) and refuses to write one; the contract says no value is
rounded, so such bodies take the standard library, which keeps them exact.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# an integer token of 17 or more digits: beyond 2**53, so a double may not hold it
LONG_INTEGER = re.compile(rb"[\[:,]\s*-?\d{17,}\s*[,}\]]")


def loads(data: bytes | memoryview) -> Any:
    """Parsed JSON; raises ``ValueError`` (``orjson.JSONDecodeError`` is one) when it is not JSON."""
    value = orjson.loads(data)
    if LONG_INTEGER.search(data):
        value = json.loads(bytes(data))
    return value


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
