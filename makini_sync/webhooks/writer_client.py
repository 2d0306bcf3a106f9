"""The receiver's side of the inbox writer (see ``inbox_writer.py`` for why it is a process).

``submit`` sends a request to the writer and waits for its reply. If the
writer dies, every waiting request gets a 503 (the sender retries), a new
writer starts at once, and ``/healthz`` says 503 until it is up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

import orjson

from makini_sync.webhooks.inbox_writer import HANDSHAKE, decode_replies, encode_request

logger = logging.getLogger(__name__)

Reply = tuple[int, bytes]  # HTTP status, text
UNAVAILABLE: Reply = (503, b"store\nthe inbox writer stopped; retry")


class InboxWriterClient(asyncio.Protocol):
    def __init__(self, secrets: Sequence[str], inbox_path: Path) -> None:
        self.secrets, self.inbox_path = list(secrets), Path(inbox_path)
        self.process: Optional[subprocess.Popen] = None
        self.transport: Optional[asyncio.Transport] = None
        self._starting: Optional[asyncio.Task] = None
        self._waiting: dict[int, asyncio.Future] = {}
        self._replies = bytearray()
        self._seq = 0
        self._closing = False

    @property
    def running(self) -> bool:
        return self.transport is not None

    async def start(self) -> None:
        """Start the writer process and connect to it (also used to restart a dead writer)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "makini_sync.webhooks.inbox_writer", "--fd", str(theirs.fileno()),
                 "--inbox", str(self.inbox_path)],
                pass_fds=(theirs.fileno(),), env=writer_environment(),
            )
        finally:
            theirs.close()
        secrets = orjson.dumps(self.secrets)
        ours.sendall(HANDSHAKE.pack(len(secrets)) + secrets)  # never on the command line or in the environment
        ours.setblocking(False)
        await asyncio.get_running_loop().create_unix_connection(lambda: self, sock=ours)

    async def submit(self, webhook_id: bytes, stamp: bytes, signature: bytes, body: bytes) -> Reply:
        if self.transport is None:
            await self._restart_quietly()
            if self.transport is None:
                return UNAVAILABLE
        loop = asyncio.get_running_loop()
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
        future = self._waiting[seq] = loop.create_future()
        # written at once, not gathered for the end of the loop's pass: the
        # writer starts verifying while the loop parses the next requests
        # (more durable requests per second than gathering them,
        # benchmarks/receiver_benchmark.py)
        self.transport.write(encode_request(seq, webhook_id, stamp, signature, body))
        return await future

    async def close(self) -> None:
        """Let the writer finish what it holds, then wait for it to exit."""
        self._closing = True
        if self.transport is not None:
            self.transport.write_eof()
        if self.process is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._wait_for_exit, self.process)
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol ---------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._replies += data
        for seq, status, text in decode_replies(self._replies):
            future = self._waiting.pop(seq, None)
            if future is not None and not future.done():  # a request whose client went away was cancelled
                future.set_result((status, text))

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.transport = None
        waiting, self._waiting = self._waiting, {}
        self._replies.clear()
        if waiting:
            logger.error("the inbox writer stopped with %d request(s) unanswered; they get a 503 and are retried "
                         "by the sender", len(waiting))
        for future in waiting.values():
            if not future.done():
                future.set_result(UNAVAILABLE)
        if not self._closing:  # start the next writer now, not on the next request
            asyncio.ensure_future(self._restart_quietly())

    # --------------------------------------------------------------------------------------------------------

    async def _restart_quietly(self) -> None:
        try:
            await self._restart()
        except Exception:  # noqa: BLE001 - logged; senders get 503s and retry, and the next request tries again
            logger.exception("the inbox writer could not be started")

    async def _restart(self) -> None:
        if self._starting is None or self._starting.done():
            if self.process is not None:
                self.process.kill()
                self.process.wait()
            self._starting = asyncio.ensure_future(self.start())
        await asyncio.shield(self._starting)

    @staticmethod
    def _wait_for_exit(process: subprocess.Popen) -> None:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


SECRET_VARIABLES = ("SOURCES__", "DESTINATION__", "SECRET", "TOKEN", "PASSWORD", "CREDENTIALS")


def writer_environment() -> dict[str, str]:
    """The receiver's environment without anything secret (the writer gets its secrets over the socket),
    and with this package importable from wherever the receiver imported it."""
    env = {k: v for k, v in os.environ.items() if not any(word in k.upper() for word in SECRET_VARIABLES)}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return env
