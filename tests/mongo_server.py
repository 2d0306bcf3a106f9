"""A real MongoDB wire-protocol server for tests: SecantusDB on loopback.

No ``mongod`` can be installed here, so the tests run against ``secantusdb``
(PyPI, GPL-2.0, beta; a test-only dependency), started as a subprocess daemon
with in-memory storage on a free port: ``secantusd-py --host 127.0.0.1
--port PORT --storage-path :memory:``. It answers within ~1.5 s and does
about 1k upserts/s, so keep test data small.

If it cannot start, the tests are skipped outside CI and fail in CI
(``CI=true``), as the services rule in issue 4 asks.

conftest.py's session fixture `mongo_uri` runs ``mongo_server()``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.processes import stop_process

STARTUP_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_command(port: int) -> list[str] | None:
    exe = Path(sys.executable).with_name("secantusd-py")
    if exe.exists():
        cmd = [str(exe)]
    elif shutil.which("secantusd-py"):
        cmd = [shutil.which("secantusd-py")]
    else:
        return None
    return cmd + ["--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"MongoDB-compatible test server unavailable in CI: {reason}")
    pytest.skip(f"MongoDB-compatible test server unavailable ({reason}); "
                "install the test extra (secantusdb) to run these tests")


@contextmanager
def mongo_server() -> Iterator[str]:
    """URI (no database path) of MAKINI_TEST_MONGODB_URI, or of a SecantusDB server run until exit."""
    try:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError
    except ImportError as exc:  # pragma: no cover
        _unavailable(f"pymongo missing: {exc}")
    given = os.environ.get("MAKINI_TEST_MONGODB_URI")  # started by .ci/run
    if given:
        client = MongoClient(given, serverSelectionTimeoutMS=5000)
        try:
            client.admin.command("ping")
        except PyMongoError as exc:
            _unavailable(f"MAKINI_TEST_MONGODB_URI={given} does not answer: {exc}")
        finally:
            client.close()
        yield given.rstrip("/") + "/"
        return
    port = _free_port()
    cmd = _server_command(port)
    if cmd is None:
        _unavailable("secantusd-py not found (pip install secantusdb)")
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    uri = f"mongodb://127.0.0.1:{port}/"
    client = MongoClient(uri, serverSelectionTimeoutMS=300, connectTimeoutMS=300)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                log.seek(0)
                tail = log.read()[-800:].decode(errors="replace")
                _unavailable(f"secantusd-py exited with {proc.returncode}: {tail}")
            try:
                client.admin.command("ping")
                break
            except PyMongoError as exc:
                if time.monotonic() > deadline:
                    _unavailable(f"no ping answer on port {port} within "
                                 f"{STARTUP_TIMEOUT_S:.0f}s: {exc}")
                time.sleep(0.1)
        client.close()
        yield uri
    finally:
        client.close()
        stop_process(proc)
        log.close()
