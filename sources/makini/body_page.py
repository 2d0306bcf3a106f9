"""A list page Arrow's JSON reader refused, kept as the text of its ``data`` array.

Parsing such a page with orjson and converting its Python objects holds the
GIL, so the walk decides where that happens (``page_workers.py``): the records
travel as the text the API sent until then. The paging fields are read from the
body without building the records (msgspec), and the spool keeps the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import msgspec

from . import exact_json
from .errors import MalformedResponse


@dataclass(frozen=True)
class BodyPage:
    data: bytes  # the page's ``data`` array, as the API sent it
    request_id: Optional[str] = None
    status: int = 200

    def records(self) -> list:
        """The page's records, parsed as ``response_body`` parses every body; MalformedResponse
        naming the request when the text is not JSON (the paging read does not check every value)."""
        records = parsed_body(self.data, self.request_id, self.status)
        if not isinstance(records, list):
            raise _no_data_array(self.request_id, self.status)
        return records


class _Envelope(msgspec.Struct):
    data: msgspec.Raw = msgspec.Raw(b"null")
    next_cursor: Any = None
    total_count: Any = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)


def envelope(body: bytes) -> Optional[tuple[bytes, Any, Any]]:
    """The text of the page's ``data`` array, its ``next_cursor`` and ``total_count``, read
    without building the records; None when the body is not an object with a ``data`` array
    (the caller parses it whole, which names what is wrong)."""
    try:
        found = _ENVELOPE.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    data = bytes(memoryview(found.data))
    if not data.startswith(b"["):
        return None
    return data, found.next_cursor, found.total_count


def parsed_body(body: bytes, request_id: Optional[str], status: int) -> Any:
    try:
        return exact_json.loads(body)
    except ValueError as exc:
        raise MalformedResponse(f"response is not JSON ({exc})", request_id=request_id, status=status) from None


def page_records(body: Any, request_id: Optional[str], status: int) -> list:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise _no_data_array(request_id, status)
    return data


def _no_data_array(request_id: Optional[str], status: int) -> MalformedResponse:
    return MalformedResponse("list response has no 'data' array", request_id=request_id, status=status)
