"""What the walks tell the run, as opposed to what they count for the report.

The run decides from it whether another extraction follows (``unfinished``)
and reconcile whether a walk's evidence is whole (``walked_whole``); the
``SyncReport`` keeps the counts and failures an operator reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WalkKey = tuple[str, str]  # (connection id, table)


@dataclass
class WalkOutcomes:
    unfinished: set[WalkKey] = field(default_factory=set)  # to go on with in the next extraction
    started_whole: set[WalkKey] = field(default_factory=set)  # fetched their first page in this run
    walked_whole: set[WalkKey] = field(default_factory=set)  # ... and their last

    def take_unfinished(self) -> frozenset[WalkKey]:
        """The walks the next extraction goes on with; none are left listed."""
        taken, self.unfinished = frozenset(self.unfinished), set()
        return taken
