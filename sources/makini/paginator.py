"""Makini's ``next_cursor`` paging as a dlt paginator, with loop detection."""

from __future__ import annotations

from typing import Any, Optional

from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from requests import Request, Response

from .client import Page
from .errors import MalformedResponse, RepeatedCursor


class MakiniCursorPaginator(JSONResponseCursorPaginator):
    """``JSONResponseCursorPaginator(cursor_path="next_cursor", cursor_param="cursor")``
    that reads the cursor from the page MakiniClient parsed, can resume from a saved
    cursor, and raises ``RepeatedCursor`` instead of looping forever."""

    def __init__(self, resume_cursor: Optional[str] = None) -> None:
        super().__init__(cursor_path="next_cursor", cursor_param="cursor")
        self.resume_cursor = resume_cursor
        self.total_count: Optional[int] = None
        self._seen: set[str] = set()

    def init_request(self, request: Request) -> None:
        if self.resume_cursor:
            request.params["cursor"] = self.resume_cursor  # type: ignore[index]  # requests.Request makes it a dict
            self._seen.add(self.resume_cursor)

    def update_state(self, response: Response, data: Optional[list[Any]] = None) -> None:
        page = data[0] if data and len(data) == 1 and isinstance(data[0], Page) else None
        if page is None:
            raise MalformedResponse("the client gave no page", request_id=response.headers.get("X-Request-Id"))
        cursor = page.next_cursor
        if cursor is not None and not isinstance(cursor, str):
            raise MalformedResponse(
                "next_cursor is not a string", request_id=response.headers.get("X-Request-Id")
            )
        if cursor:
            if cursor in self._seen:
                raise RepeatedCursor(
                    "the API returned a cursor it already returned in this walk",
                    request_id=response.headers.get("X-Request-Id"),
                )
            self._seen.add(cursor)
        total = page.total_count
        if isinstance(total, int) and self.total_count is None:
            self.total_count = total
        self._next_reference = cursor or None

    @property
    def cursor(self) -> Optional[str]:
        """The cursor of the next page, or None after the last page."""
        return self._next_reference
