"""Page-level checkpoints: a walk's fetched pages, staged durably as they land.

dlt commits a walk's state only with a finished load package, so a sync killed
in the middle of an extraction would start that extraction over. The spool
closes the gap: every page, as parsed, is written to disk (Arrow IPC, fsync)
together with the cursor after it, before the walk uses it. A rerun replays
the spooled pages instead of fetching them again and goes on from the last
spooled cursor, so at most the one page in flight is fetched twice.

A spool belongs to one stretch of a walk: it records the cursor it started
from (``base``). After a load commits, the walk's state holds a newer cursor
and the spool is cleared; a spool whose base no longer matches the state is
stale and is cleared too. Neither a bookmark nor a cursor in dlt state ever
moves past a page that is not in a committed load package.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc


@dataclass
class SpooledPage:
    records: Any  # a pa.Table (Arrow-parsed page) or a list of dicts
    cursor: Optional[str]  # the cursor after this page
    total_count: Optional[int]
    date: Optional[str]  # the response's Date header (the walk's bookmark cap)
    request_id: Optional[str]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool of one walk (connection x entity) in ``root``."""

    def __init__(self, root: Path, connection_id: str, table: str, fsync: bool = True) -> None:
        self.dir = Path(root) / connection_id / table
        self.fsync = fsync

    @property
    def _manifest(self) -> Path:
        return self.dir / "manifest.json"

    def load(self, base: dict) -> list[SpooledPage]:
        """The pages spooled since ``base`` (the walk's position in dlt state); [] if stale."""
        try:
            manifest = json.loads(self._manifest.read_text())
        except (FileNotFoundError, ValueError):
            self.clear()
            return []
        if manifest.get("base") != base:
            self.clear()
            return []
        pages = []
        for entry in manifest["pages"]:
            path = self.dir / entry["file"]
            if entry["kind"] == "arrow":
                # read into memory: the files go away while the tables are still in use
                records = ipc.open_file(pa.BufferReader(path.read_bytes())).read_all()
            else:
                records = orjson.loads(path.read_bytes())
            pages.append(SpooledPage(records, entry["cursor"], entry["total_count"], entry["date"], entry["request_id"]))
        return pages

    def start(self, base: dict) -> None:
        self.clear()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_manifest({"base": base, "pages": []})

    def append(self, page: SpooledPage) -> None:
        manifest = json.loads(self._manifest.read_text())
        number = manifest.get("next", len(manifest["pages"]))
        manifest["next"] = number + 1
        if isinstance(page.records, pa.Table):
            name, kind = f"{number:06d}.arrow", "arrow"
            with pa.OSFile(str(self.dir / name), "wb") as sink, ipc.new_file(sink, page.records.schema) as writer:
                writer.write_table(page.records)
        else:
            name, kind = f"{number:06d}.json", "json"
            (self.dir / name).write_bytes(orjson.dumps(page.records))
        if self.fsync:
            with open(self.dir / name, "rb") as f:
                os.fsync(f.fileno())
        manifest["pages"].append({
            "file": name, "kind": kind, "cursor": page.cursor, "total_count": page.total_count,
            "date": page.date, "request_id": page.request_id,
        })
        self._write_manifest(manifest)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _write_manifest(self, manifest: dict) -> None:
        tmp = self._manifest.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(manifest, f)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self._manifest)
        if self.fsync:
            _fsync_dir(self.dir)


    def trim(self, committed: Optional[dict]) -> None:
        """After a load committed: drop the pages it holds.

        ``committed`` is the walk's saved position in the committed state
        (None: the walk finished, so the whole spool is loaded). Pages after
        that cursor (fetched ahead of the load's end) stay, rebased on it.
        """
        try:
            manifest = json.loads(self._manifest.read_text())
        except (FileNotFoundError, ValueError):
            return
        if committed is None:
            self.clear()
            return
        cursors = [p["cursor"] for p in manifest["pages"]]
        if committed.get("cursor") not in cursors:
            if manifest.get("base") != committed:
                self.clear()
            return
        keep = cursors.index(committed["cursor"]) + 1
        for entry in manifest["pages"][:keep]:
            (self.dir / entry["file"]).unlink(missing_ok=True)
        self._write_manifest({"base": committed, "pages": manifest["pages"][keep:], "next": manifest.get("next", 0)})


def settle_spools(root: Path, positions: dict[tuple[str, str], Optional[dict]]) -> None:
    """Trim every spool under ``root`` to what a committed load left to do.

    ``positions`` maps (connection id, table) to the walk's base in the
    committed state, or None when that walk is finished. A spool of a walk the
    committed state does not know yet (it began in an extraction that never
    committed) is left alone: the walk replays it when it starts.
    """
    root = Path(root)
    if not root.exists():
        return
    for connection_dir in root.iterdir():
        for table_dir in connection_dir.iterdir():
            key = (connection_dir.name, table_dir.name)
            if key in positions:
                Spool(root, *key).trim(positions[key])
