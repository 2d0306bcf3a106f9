"""Page-level checkpoints: a walk's fetched pages, staged durably as they land.

dlt commits a walk's state only with a finished load package, so a sync killed
in the middle of an extraction would start that extraction over. The spool
closes the gap: every page, as parsed, is appended to the walk's log (Arrow
IPC bytes and the cursor after it, in one fsynced frame) before the walk uses
it. A rerun replays the spooled pages instead of fetching them again and goes
on from the last spooled cursor, so at most the one page in flight is fetched
twice.

A spool belongs to one stretch of a walk: it records the cursor it started
from (``base``). After a load commits, the walk's state holds a newer cursor
and the spool is cleared; a spool whose base no longer matches the state is
stale and is cleared too. Neither a bookmark nor a cursor in dlt state ever
moves past a page that is not in a committed load package.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, NamedTuple, Optional

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

from . import exact_json
from .body_page import BodyPage

LOG_NAME = "spool.log"
_FRAME = struct.Struct("<4sIQI")  # magic, header length, payload length, crc32 of header + payload
_MAGIC = b"MKS1"


@dataclass
class SpooledPage:
    records: Any  # a pa.Table (Arrow-parsed page), a list of dicts, or a BodyPage (parsed later)
    cursor: Optional[str]  # the cursor after this page
    total_count: Optional[int]
    date: Optional[str]  # the response's Date header (the walk's bookmark cap)
    request_id: Optional[str]
    path: str = "spool"  # how the page was parsed (client.Page.path); "spool" when replayed
    body: Optional[BodyPage] = None  # the records as the API sent them, when the page came that way


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _frame(header: dict, payload: bytes | memoryview = b"") -> bytes:
    head = orjson.dumps(header)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((_FRAME.pack(_MAGIC, len(head), len(payload), crc), head, payload))


class _Frame(NamedTuple):
    """Where one intact page frame of a log is, and what checks its payload when it is read again."""
    header: dict
    offset: int  # of the payload
    length: int
    head_crc: int  # crc32 of the header bytes: the payload's check goes on from it
    crc: int


class SpoolChanged(RuntimeError):
    """A spool's log no longer holds a page where ``Spool.load`` found it."""


def _frames(log: BinaryIO) -> Iterator[tuple[int, _Frame]]:
    """(end offset, frame) of each whole, intact frame; stops at the first torn or
    damaged one (a write cut short by a crash, a length that runs past the file).
    One frame is in memory at a time: a spool holds a whole package's pages."""
    size, offset = os.fstat(log.fileno()).st_size, 0
    while offset + _FRAME.size <= size:
        magic, head_len, payload_len, crc = _FRAME.unpack(log.read(_FRAME.size))
        start = offset + _FRAME.size + head_len
        if magic != _MAGIC or start + payload_len > size:
            return
        head, payload = log.read(head_len), log.read(payload_len)
        head_crc = zlib.crc32(head)
        if zlib.crc32(payload, head_crc) != crc:
            return
        try:
            header = orjson.loads(head)
        except orjson.JSONDecodeError:
            return
        offset = start + payload_len
        yield offset, _Frame(header, start, payload_len, head_crc, crc)


def _payload(log: BinaryIO, frame: _Frame) -> bytes:
    """The frame's payload read again, checked against its CRC."""
    log.seek(frame.offset)
    payload = log.read(frame.length)
    if len(payload) != frame.length or zlib.crc32(payload, frame.head_crc) != frame.crc:
        raise SpoolChanged(f"the spool {getattr(log, 'name', '')} changed after it was read: "
                           "a page is not where it was (another process writing the same pipeline's spools?)")
    return payload


def _encode(page: SpooledPage) -> tuple[dict, bytes | memoryview]:
    header = {"cursor": page.cursor, "total_count": page.total_count, "date": page.date,
              "request_id": page.request_id}
    if isinstance(page.records, pa.Table):
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, page.records.schema) as writer:
            writer.write_table(page.records)
        return {**header, "kind": "arrow"}, memoryview(sink.getvalue())
    body = page.records if isinstance(page.records, BodyPage) else page.body
    if body is not None:
        return {**header, "kind": "json"}, body.data  # the records as the API sent them
    return {**header, "kind": "json"}, exact_json.dumps(page.records)


def _decode(header: dict, payload: bytes) -> SpooledPage:
    if header["kind"] == "arrow":
        records = ipc.open_stream(pa.py_buffer(payload)).read_all()
    else:  # parsed where the walk converts it (page_workers.py)
        records = BodyPage(bytes(payload), header["request_id"])
    return SpooledPage(records, header["cursor"], header["total_count"], header["date"], header["request_id"])


class SpooledPages:
    """The pages ``Spool.load`` found, each read from the log (and checked) and decoded
    only when the walk reaches it: a spool can hold a whole package's pages."""

    def __init__(self, log: Optional[Path], frames: list[_Frame]) -> None:
        self._log, self._frames = log, frames

    def __bool__(self) -> bool:
        return bool(self._frames)

    @property
    def last_cursor(self) -> Optional[str]:
        return self._frames[-1].header["cursor"] if self._frames else None

    def __iter__(self) -> Iterator[SpooledPage]:
        if not self._frames or self._log is None:
            return
        with open(self._log, "rb") as log:
            for frame in self._frames:
                yield _decode(frame.header, _payload(log, frame))


class Spool:
    """The spool of one walk (connection x entity) in ``root``: one append-only log.

    The log's first frame holds the base; each page is one more frame (page
    metadata and Arrow IPC bytes, with a CRC) written and fsynced at once, so
    a page costs one write and one fsync. A frame cut short by a crash fails
    its length or CRC check and is dropped with everything after it. Written
    by hand: it is a few dozen lines, and the file formats around (Arrow IPC,
    Parquet) cannot be appended to durably page by page.
    """

    def __init__(self, root: Path, connection_id: str, table: str, fsync: bool = True) -> None:
        self.dir = Path(root) / connection_id / table
        self.fsync = fsync
        self._fd: Optional[int] = None
        self._base_unwritten: Optional[dict] = None  # begin(): the log is written with its first page

    @property
    def _log(self) -> Path:
        return self.dir / LOG_NAME

    def _read(self) -> tuple[Optional[dict], list[_Frame], int]:
        """(base, the page frames, end of the last intact frame)."""
        base, pages, good = None, [], 0
        try:
            log = open(self._log, "rb")
        except FileNotFoundError:
            return None, [], 0
        with log:
            for end, frame in _frames(log):
                if base is None:
                    if "base" not in frame.header:
                        break
                    base = frame.header["base"]
                else:
                    pages.append(frame)
                good = end
        return base, pages, good

    def load(self, base: dict) -> SpooledPages:
        """The pages spooled since ``base`` (the walk's position in dlt state); none if stale.

        A stretch that ended before pages its feed had fetched ahead (the
        extraction was full) leaves them here; the next stretch starts from a
        cursor among them and takes the rest instead of fetching them again.
        """
        found, pages, good = self._read()
        if found is not None and found != base and base.get("cursor") is not None and \
                {**found, "cursor": None} == {**base, "cursor": None}:
            self._rebase(base, found, pages)
            found, pages, good = self._read()
        if found is None or found != base:
            self.clear()
            return SpooledPages(None, [])
        if good != self._log.stat().st_size:
            os.truncate(self._log, good)  # drop a torn tail, so appends follow intact frames
        return SpooledPages(self._log, pages)

    def start(self, base: dict) -> None:
        self.clear()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_log(self._log, [_frame({"base": base})])

    def begin(self, base: dict) -> None:
        """Start a new log from ``base`` with its first page (``append``)."""
        self._base_unwritten = base

    @property
    def empty(self) -> bool:
        """No page is kept yet (a log begun, not written)."""
        return self._base_unwritten is not None

    def append(self, page: SpooledPage) -> None:
        header, payload = _encode(page)
        frame = _frame(header, payload)
        if self._base_unwritten is not None:
            base, self._base_unwritten = self._base_unwritten, None
            self.clear()
            self.dir.mkdir(parents=True, exist_ok=True)
            self._write_log(self._log, [_frame({"base": base}), frame])
            return
        if self._fd is None:
            self._fd = os.open(self._log, os.O_WRONLY | os.O_APPEND)
        view, written = memoryview(frame), 0
        while written < len(frame):
            written += os.write(self._fd, view[written:])
        if self.fsync:
            os.fsync(self._fd)

    def clear(self) -> None:
        self._close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def trim(self, committed: Optional[dict]) -> None:
        """After a load committed: drop the pages it holds.

        ``committed`` is the walk's saved position in the committed state
        (None: the walk finished, so the whole spool is loaded). Pages after
        that cursor (fetched ahead of the load's end) stay, rebased on it.
        """
        if committed is None:
            self.clear()  # the common case after a load: no need to read the pages back
            return
        base, pages, _ = self._read()
        self._rebase(committed, base, pages)

    def _rebase(self, committed: dict, base: Optional[dict], pages: list[_Frame]) -> None:
        """``trim`` on what a read of the log found (``base``, ``pages``)."""
        if base is None:
            return
        if committed.get("cursor") is None:  # a walk paused before its first page: nothing was loaded
            if base != committed:
                self.clear()
            return
        cursors = [frame.header["cursor"] for frame in pages]
        if committed.get("cursor") not in cursors:
            if base != committed:
                self.clear()
            return
        keep = pages[cursors.index(committed["cursor"]) + 1:]
        self._close()
        tmp = self._log.with_suffix(".tmp")
        with open(self._log, "rb") as log:
            self._write_log(tmp, itertools.chain([_frame({"base": committed})],
                                                 (_frame(f.header, _payload(log, f)) for f in keep)))
        os.replace(tmp, self._log)
        if self.fsync:
            _fsync_dir(self.dir)

    def _write_log(self, path: Path, frames: Iterable[bytes]) -> None:
        with open(path, "wb") as f:
            for frame in frames:
                f.write(frame)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        if self.fsync:
            _fsync_dir(self.dir)  # the log's directory entry is durable too

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit ``os`` may be gone already
            self._close()


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
