"""Which inbox ``--inbox`` names (or env ``MAKINI_INBOX``, or dlt config
``sources.makini.webhook_inbox``): a SQLite file, or a JetStream stream.

    ./makini_webhooks.sqlite        a file path: the embedded SQLite inbox (the default)
    nats://HOST:PORT[/STREAM]       NATS JetStream: STREAM (default ``makini``) on that server

A value that looks like a URL (a scheme before any ``/``) must be exactly the
second form; anything else (``xyz://...``, ``nats:/broken``, ``nats://host``
without a port) is refused with one line saying what is accepted, rather than
being taken as a relative file name. A file whose name holds a colon is
still reachable as ``./name:with:colon``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlsplit

import dlt

from sources.makini.errors import ConfigurationError

from makini_sync.webhooks.inbox import DEFAULT_INBOX

DEFAULT_STREAM = "makini"
CONFIG_KEY = "sources.makini.webhook_inbox"  # beside sources.makini.webhook_secret; env SOURCES__MAKINI__WEBHOOK_INBOX
ACCEPTED = "a file path (the SQLite inbox) or nats://HOST:PORT[/STREAM] (JetStream; STREAM is letters, digits, _ or -)"
# a stream name is also the first token of its subjects and part of its
# dead-letter stream's and ledger's names, so only characters valid in all three
STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+-]*:")


@dataclass(frozen=True)
class JetStreamAddress:
    server: str  # nats://HOST:PORT, as nats-py takes it
    stream: str


InboxLocation = Union[Path, JetStreamAddress]


def inbox_location(explicit: Optional[str] = None) -> InboxLocation:
    """``--inbox``, else ``MAKINI_INBOX``, else dlt config ``sources.makini.webhook_inbox``, else
    ``makini_webhooks.sqlite`` in the working dir."""
    if explicit:
        return parse_inbox(explicit, "--inbox")
    from_env = os.environ.get("MAKINI_INBOX")
    if from_env:
        return parse_inbox(from_env, "MAKINI_INBOX")
    configured = _configured_inbox()
    if configured:
        return parse_inbox(configured, CONFIG_KEY)
    return Path(DEFAULT_INBOX).resolve()


def _configured_inbox() -> Optional[str]:
    value: object = dlt.config.get(CONFIG_KEY)
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"{CONFIG_KEY} must be a string: give {ACCEPTED}")
    return value


def parse_inbox(value: str, given_as: str = "--inbox") -> InboxLocation:
    """The inbox ``value`` names; a ConfigurationError (one line) for a value it does not understand."""
    if not URL_LIKE.match(value):  # no scheme (a colon after a "/" or "." is part of a file name)
        return Path(value).resolve()
    address = _jetstream_address(value)
    if address is None:
        raise ConfigurationError(f"{given_as} {value!r} is not an inbox: give {ACCEPTED}")
    return address


def _jetstream_address(value: str) -> Optional[JetStreamAddress]:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return None
    if parts.scheme != "nats" or not value.startswith("nats://") or not parts.hostname or port is None:
        return None
    if parts.username is not None or parts.query or parts.fragment:
        return None  # credentials travel as configuration, never in a value that lands in process lists
    stream = parts.path.strip("/") or DEFAULT_STREAM
    if parts.path.count("/") > 1 or not STREAM_NAME.fullmatch(stream):
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return JetStreamAddress(f"nats://{host}:{port}", stream)
