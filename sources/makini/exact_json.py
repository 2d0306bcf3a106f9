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

# an integer token of 19 or more digits: orjson keeps every integer of 18 digits
# exactly (they fit 64 bits); longer ones may be beyond 64 bits and rounded
LONG_INTEGER = re.compile(rb"[\[:,]\s*-?\d{19,}\s*[,}\]]")
# Every byte to a space but digits, to "0": a run of 19 zeros in the result is the
# one thing the regex above can match. bytes.translate and the substring search
# run in C at memory speed, so a page without such a run skips the regex, which
# took about a tenth of a sync's time on the nulls shape (benchmarks/sync_benchmark.py).
_DIGITS_ONLY = bytes(ord("0") if chr(byte).isdigit() and byte < 128 else ord(" ") for byte in range(256))
_LONG_RUN = b"0" * 19


def has_long_integer(data: bytes | memoryview) -> bool:
    """Whether ``data`` holds an integer token orjson might round."""
    return _LONG_RUN in bytes(data).translate(_DIGITS_ONLY) and LONG_INTEGER.search(data) is not None


def loads(data: bytes | memoryview) -> Any:
    """Parsed JSON; raises ``ValueError`` (``orjson.JSONDecodeError`` is one) when it is not JSON."""
    value = orjson.loads(data)
    if has_long_integer(data):
        value = json.loads(bytes(data))
    return value


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
