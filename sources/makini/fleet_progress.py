"""One progress bar for a fleet, not one per walk.

A thousand connections of five entities each would draw five thousand bars.
The fleet's bar counts records, and says how many walks are done, the
requests per second and the 429s, summed over the connections' pacers.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

_REFRESH_SECONDS = 0.5


class FleetProgress:
    def __init__(self, collector: Optional[Any], connections: Sequence[Any], walks: int) -> None:
        """``collector``: dlt's progress collector; None shows nothing."""
        self.collector, self.connections, self.walks = collector, connections, walks
        self.walks_done = 0
        self._records = 0
        self._started = self._shown = time.monotonic()

    def records(self, count: int) -> None:
        self._records += count
        if time.monotonic() - self._shown >= _REFRESH_SECONDS:
            self.show()

    def walk_done(self) -> None:
        self.walks_done += 1

    def show(self) -> None:
        now = time.monotonic()
        if self.collector is None:
            self._records, self._shown = 0, now
            return
        sent = sum(c.client.pacer.sent for c in self.connections)
        refused = sum(c.client.pacer.refused for c in self.connections)
        message = (f"{self.walks_done}/{self.walks} walks done, {sent / max(now - self._started, 1e-3):.0f} req/s, "
                   f"{refused} x 429")
        self.collector.update("records", inc=self._records, message=message)
        self._records, self._shown = 0, now
