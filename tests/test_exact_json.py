"""JSON without rounding (sources/makini/exact_json.py): integers orjson would
round take the standard library; 64-bit ones stay on orjson."""

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
