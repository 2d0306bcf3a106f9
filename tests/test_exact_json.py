"""JSON without rounding (sources/makini/exact_json.py): integers orjson would
round take msgspec; 64-bit ones stay on orjson."""

from __future__ import annotations

import pytest

from sources.makini import exact_json

BEYOND = [b"[123456789012345678901234, 5]", b'{"a": -9223372036854775809}', b'{"a":18446744073709551616}',
          b"[1000000000000000001,99999999999999999999]", b"99999999999999999999",
          b"{\"digits\": \"" + b"7" * 10_000 + b"\"}"]  # inside text: counted, at a cost in speed only
WITHIN = [b'{"a": 9223372036854775807}', b'{"a":18446744073709551615}', b'{"a":-9223372036854775808}',
          b'{"a":1000000000000000001}', b'{"a":0.12345678901234567890123}', b'{"a":1.5e1234567890123456789}',
          b'{"id":"po_1","n":12}']


@pytest.mark.parametrize("body", BEYOND)
def test_integers_beyond_64_bits_are_found_and_kept_exact(body):
    assert exact_json.has_long_integer(body)
    import json

    assert exact_json.loads(body) == json.loads(body)
    assert exact_json.dumps(exact_json.loads(body)).decode().replace(" ", "") == body.decode().replace(" ", "")


@pytest.mark.parametrize("body", WITHIN)
def test_64_bit_integers_and_floats_stay_on_orjson(body):
    assert not exact_json.has_long_integer(body)


LONG = b"123456789012345678901234"
NOT_JSON = [b"[" * 5000 + LONG + b"]" * 5000, b"[" + LONG + b", NaN]", b'["\\ud800", ' + LONG + b"]",
            b"[" + LONG + b", 1e400]", b"[" + LONG, b"[" + LONG + b"] tail", b'{"a": ' + LONG + b', "b"}']


@pytest.mark.parametrize("body", NOT_JSON, ids=["deep", "nan", "lone surrogate", "beyond a double", "truncated",
                                                "trailing", "bad object"])
def test_a_body_with_long_integers_that_is_not_json_raises_value_error(body):
    """As orjson refuses these (a ValueError, which callers report as a malformed response)."""
    assert exact_json.has_long_integer(body)
    with pytest.raises(ValueError):
        exact_json.loads(body)
