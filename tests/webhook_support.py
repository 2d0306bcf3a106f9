"""Helpers for webhook tests: secrets, signed requests, and a receiver in its own process."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from tests.processes import stop_process

REPO = Path(__file__).resolve().parent.parent


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def signed_headers(secrets: list[str], webhook_id: str, body: bytes, when: Optional[float] = None) -> dict:
    stamp = datetime.fromtimestamp(when if when is not None else time.time(), tz=timezone.utc)
    signatures = " ".join(Webhook(s).sign(webhook_id, stamp, body.decode()) for s in secrets)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


def event(webhook_id: str, kind: str, connection_id: str, entity: str = "purchase-orders", record: Optional[dict] = None,
          **data) -> bytes:
    payload = {"id": webhook_id, "type": kind, "created_at": "2026-03-01T00:00:00.000Z", "connection_id": connection_id,
               "data": {"entity": entity, "record": record} if record is not None else data}
    return orjson.dumps(payload)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(tmp_path: Path, secrets: list[str], **extra: str) -> dict:
    return {
        **os.environ,
        "SOURCES__MAKINI__WEBHOOK_SECRET": orjson.dumps(secrets).decode(),
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "w.duckdb"),
        "PYTHONPATH": str(REPO),
        **extra,
    }


@contextlib.contextmanager
def receiver(tmp_path: Path, secrets: list[str], *args: str, port: Optional[int] = None,
             log_level: str = "INFO", inbox: Optional[str] = None, **env: str) -> Iterator[str]:
    """``python -m pipelines.webhooks serve`` in a subprocess; yields its base URL.
    ``inbox``: the ``--inbox`` value (default: inbox.sqlite in ``tmp_path``)."""
    port = port or free_port()
    log = open(tmp_path / f"receiver-{port}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.webhooks", "--inbox", inbox or str(tmp_path / "inbox.sqlite"),
         "--log-level", log_level, "serve",
         "--port", str(port), *args],
        cwd=tmp_path, env=cli_env(tmp_path, secrets, **env), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, proc, tmp_path / f"receiver-{port}.log")
        yield url
    finally:
        stop_process(proc)
        log.close()


def wait_until_serving(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    """Until the receiver at ``url`` answers ``/healthz``; its log in the error if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"receiver did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def run_webhooks_cli(tmp_path: Path, secrets: list[str], *args: str, inbox: Optional[str] = None,
                     **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.webhooks", "--inbox", inbox or str(tmp_path / "inbox.sqlite"), *args],
        cwd=tmp_path, env=cli_env(tmp_path, secrets, **env), capture_output=True, text=True, timeout=300,
    )
