"""Where an unfinished walk goes on, as dlt state keeps it between loads.

A walk that spans several loads saves, beside its bookmark, the cursor of
its next page, whether it walks everything again (a backfill), and its
watermark so far. That slot is written and read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .bookmark import Bookmark, Watermark

STATE_KEY = "walk"  # the slot beside the bookmark in a connection's dlt state


@dataclass
class WalkPosition:
    cursor: Optional[str]  # the next page's cursor; None: the walk's first page
    backfill: bool  # walks every record again, whatever the bookmark says
    watermark: Watermark

    def to_state(self) -> dict:
        return {"cursor": self.cursor, "backfill": self.backfill, **self.watermark.to_state()}

    @classmethod
    def from_state(cls, state: dict) -> Optional["WalkPosition"]:
        """The position saved in a connection's state, or None when its walk is not under way."""
        saved = state.get(STATE_KEY)
        if not saved:
            return None
        backfill = bool(saved.get("backfill"))
        bookmark = Bookmark() if backfill else Bookmark.from_state(state)
        return cls(saved.get("cursor"), backfill, Watermark.from_state(bookmark, saved))

    def base(self, modified_after: Optional[str]) -> dict:
        """Where this stretch starts, as its spool records it."""
        return walk_base(self.cursor, modified_after, self.backfill)


def walk_base(cursor: Optional[str], modified_after: Optional[str], backfill: bool) -> dict:
    """Where a stretch of a walk starts, as its spool records it."""
    return {"cursor": cursor, "modified_after": None if backfill else modified_after, "backfill": backfill}
