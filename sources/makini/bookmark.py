"""The incremental bookmark of one entity of one connection.

Why not ``dlt.sources.incremental``: it filters every item a resource yields,
child tables included (which lack ``updated_at``), it can only advance its
``last_value`` to the maximum seen, and it commits only with a finished load.
Makini needs three things it cannot give:

* **A capped bookmark.** The next run starts from ``min(newest updated_at
  seen, the connection's completeness bound)`` (``completeness.py``), so a
  record whose change Makini publishes late, with an earlier ``updated_at``,
  is still caught by the next run.
* **Boundary deduplication.** ``modified_after`` is inclusive and the cap may
  sit below records already loaded, so the bookmark remembers the versions
  (id, ``updated_at``) loaded at or after it, and the next run drops those
  (equal ``updated_at`` = same version): a run with no changes loads nothing.
* **Mid-walk resumption**: the watermark of a walk that spans several loads
  is saved in dlt state with each load (``Watermark.to_state``, ``walk.py``).

The bookmark still lives in dlt state (``dlt.current.resource_state()``), so it
is saved with the load package and shown by ``dlt pipeline makini_sync info``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

import logging

import pyarrow as pa
import pyarrow.compute as pc

from .settings import ID_COLUMN, UPDATED_AT_COLUMN

logger = logging.getLogger(__name__)


def iso_ms(value: datetime) -> str:
    """ISO 8601, UTC, millisecond precision, ``Z``: the API's timestamp format."""
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)


MAX_REMEMBERED = 50_000


@dataclass
class Bookmark:
    """Where the next walk starts: ``modified_after``, plus the versions at or
    after it that are already loaded (id -> ``updated_at``), which the next
    walk will see again and drops."""

    modified_after: Optional[str] = None
    loaded: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: Optional[dict]) -> "Bookmark":
        state = state or {}
        return cls(state.get("modified_after"), dict(state.get("loaded") or {}))

    def to_state(self) -> dict:
        return {"modified_after": self.modified_after, "loaded": dict(sorted(self.loaded.items()))}

    def already_loaded(self, record_id: str, updated_at: Optional[str]) -> bool:
        """True when this exact version was loaded by an earlier walk."""
        return self.loaded.get(record_id) == updated_at


    def loads_any(self, prepared: pa.Table) -> bool:
        """Whether a prepared page's table (canonical ``id``, ``updated_at`` as sent) holds a
        version an earlier walk loaded."""
        if not self.loaded or prepared.num_rows == 0:
            return False
        loaded = self.loaded
        stamps = prepared[UPDATED_AT_COLUMN].to_pylist()
        return any(loaded.get(rid) == stamp for rid, stamp in zip(prepared[ID_COLUMN].to_pylist(), stamps, strict=True))

    def drop_loaded(self, records: pa.Table, id_field: str, updated_field: str) -> pa.Table:
        """``records`` without the versions an earlier walk loaded (Arrow twin of ``already_loaded``).

        A dict lookup per row rather than ``pc.is_in``: reconcile's map holds every
        stored version, and building its Arrow value set for each page took more
        memory than the walk itself (benchmarks/reconcile_benchmark.py)."""
        if not self.loaded or records.num_rows == 0:
            return records
        loaded = self.loaded
        ids = records[id_field].cast(pa.string()).to_pylist()
        keep = [loaded.get(rid) != stamp for rid, stamp in zip(ids, records[updated_field].to_pylist(), strict=True)]
        return records if all(keep) else records.filter(pa.array(keep))


class Watermark:
    """Tracks what one walk saw, to produce the next bookmark.

    ``cap`` is the latest bookmark the walk may keep: the connection's
    completeness bound, less the lookback (``completeness.py``). Versions are
    remembered only at the running maximum and at or after the cap, at most
    ``MAX_REMEMBERED`` of them, so memory stays flat however many records the
    walk returns.
    """

    def __init__(self, previous: Bookmark, cap: Optional[datetime]) -> None:
        self.previous = previous
        self.cap = cap
        self.newest: Optional[datetime] = None
        self._ids_at_newest: set[str] = set()
        self._recent: dict[str, datetime] = {}  # id -> updated_at, for updated_at >= cap

    def to_state(self) -> dict:
        """What a walk interrupted between loads needs to go on (``walk.py`` saves it)."""
        return {
            "cap": iso_ms(self.cap) if self.cap else None,
            "newest": iso_ms(self.newest) if self.newest else None,
            "at_newest": sorted(self._ids_at_newest),
            "recent": {rid: iso_ms(ts) for rid, ts in sorted(self._recent.items())},
        }

    @classmethod
    def from_state(cls, previous: Bookmark, state: dict) -> "Watermark":
        mark = cls(previous, parse_iso(state["cap"]) if state.get("cap") else None)
        if state.get("newest"):
            mark.newest = parse_iso(state["newest"])
        mark._ids_at_newest = set(state.get("at_newest") or ())
        mark._recent = {rid: parse_iso(ts) for rid, ts in (state.get("recent") or {}).items()}
        return mark

    def observe(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        stamps, ids = table["updated_at"], table["id"]
        page_max = pc.max(stamps).as_py()
        if page_max is None:
            return
        at_max = ids.filter(pc.equal(stamps, pa.scalar(page_max, stamps.type))).to_pylist()
        if self.newest is None or page_max > self.newest:
            self.newest, self._ids_at_newest = page_max, set(at_max)
        elif page_max == self.newest:
            self._ids_at_newest.update(at_max)
        if self.cap is not None and len(self._recent) <= MAX_REMEMBERED:
            recent = pc.greater_equal(stamps, pa.scalar(self.cap, stamps.type))
            if pc.any(recent).as_py():
                for rid, stamp in zip(ids.filter(recent).to_pylist(), stamps.filter(recent).to_pylist(), strict=True):
                    self._recent[rid] = stamp

    def next_bookmark(self) -> Bookmark:
        if self.newest is None:
            return self.previous  # nothing new: keep where we were
        if self.cap is None or self.newest < self.cap:
            stamp = iso_ms(self.newest)
            return Bookmark(stamp, {rid: stamp for rid in self._ids_at_newest})
        if len(self._recent) > MAX_REMEMBERED:
            # the cap holds (passing it can lose records for ever); versions past the
            # memory load again next run and merge onto themselves
            logger.warning(
                "more than %d records are newer than the bookmark's cap %s; the next run reads them again",
                MAX_REMEMBERED, iso_ms(self.cap),
            )
        return Bookmark(iso_ms(self.cap), {rid: iso_ms(ts) for rid, ts in self._recent.items()})
