"""JSON in and out without rounding: orjson, and for integers beyond 64 bits
msgspec (reading) and the standard library (writing).

orjson reads an integer beyond 64 bits as a float (rounded) and refuses to
write one; the contract says no value is rounded, so such bodies take a
parser that keeps them exact.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import orjson

# orjson keeps every integer of 18 digits exactly, and those of 19 or more only
# within [-2**63, 2**64); beyond, it reads a rounded float.
EXACT_RANGE = range(-(2**63), 2**64)
LONG_DIGITS = 19
# Every byte to a space but digits, to "0": bytes.translate and the searches for
# runs of LONG_DIGITS zeros run in C, so only the long digit runs a page holds
# are looked at in Python (a regex over every page took about a tenth of a
# sync's time on the nulls shape, benchmarks/sync_benchmark.py).
_DIGITS_ONLY = bytes(ord("0") if chr(byte).isdigit() and byte < 128 else ord(" ") for byte in range(256))
_LONG_RUN = b"0" * LONG_DIGITS
_NOT_AN_INTEGER_BEFORE = frozenset(b".eE+")  # the digits are a float's fraction or exponent


def has_long_integer(data: bytes | memoryview) -> bool:
    """Whether ``data`` holds an integer orjson would round: one outside its
    64-bit range (19-digit ids within it are common and stay on orjson). A run
    of digits inside a string may count too; that costs speed, never a value."""
    data = bytes(data)
    digits = data.translate(_DIGITS_ONLY)
    at = digits.find(_LONG_RUN)
    while at >= 0:
        end = digits.find(b" ", at)
        end = len(digits) if end < 0 else end
        start = at - 1 if at and data[at - 1] == ord("-") else at
        before = data[start - 1] if start else None
        # 21 digits or more are beyond 2**64 whatever they say (and int() refuses thousands)
        if before not in _NOT_AN_INTEGER_BEFORE and (end - at > 20 or int(data[start:end]) not in EXACT_RANGE):
            return True
        at = digits.find(_LONG_RUN, end)
    return False


def loads(data: bytes | memoryview) -> Any:
    """Parsed JSON; raises ``ValueError`` (``orjson.JSONDecodeError`` and
    ``msgspec.DecodeError`` are ones) when it is not JSON. msgspec reads
    integers of any length exactly and refuses what orjson refuses (NaN, lone
    surrogates, numbers beyond a double); it took the place of orjson then the
    standard library, two parses of such a body (benchmarks/sync_variants.py)."""
    if has_long_integer(data):
        try:
            return msgspec.json.decode(data)
        except RecursionError:  # orjson refuses such depth as a JSONDecodeError: so does this
            raise ValueError("JSON nested too deeply") from None
    return orjson.loads(data)


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
