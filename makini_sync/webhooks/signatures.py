"""Standard Webhooks verification against every configured secret (rotation).

The ``standardwebhooks`` library does the work: required headers, the 5
minute timestamp window, constant-time comparison of every ``v1`` signature.
Any exception it raises, whatever its type (malformed headers raise others),
is a rejection.
"""

from __future__ import annotations

import time
from typing import Mapping, Optional, Sequence

from standardwebhooks.webhooks import Webhook

TOLERANCE_SECONDS = 5 * 60


class Rejected(Exception):
    """Why a request was refused: ``reason`` labels the metric, ``status`` the answer."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


def secret_list(value: object) -> list[str]:
    """``whsec_...`` secrets: one, a list, or a JSON list / whitespace-separated string."""
    import orjson

    if isinstance(value, str):
        text = value.strip()
        value = orjson.loads(text) if text.startswith("[") else text.split()
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(
            "sources.makini.webhook_secret must hold one secret or a list of secrets "
            "(env SOURCES__MAKINI__WEBHOOK_SECRET)"
        )
    return [str(secret) for secret in value]


def parse_secrets(value: object) -> list[Webhook]:
    """A verifier per secret (see ``secret_list`` for the accepted shapes); a malformed secret is a ValueError."""
    verifiers = []
    for position, secret in enumerate(secret_list(value), 1):
        try:
            verifiers.append(Webhook(str(secret)))
        except Exception:  # noqa: BLE001 - never echo the secret itself
            raise ValueError(f"webhook secret #{position} is not a valid whsec_<base64> secret") from None
    return verifiers


def verify(verifiers: Sequence[Webhook], body: bytes, headers: Mapping[str, str], now: Optional[float] = None) -> str:
    """The verified ``webhook-id``; raises ``Rejected`` (401) otherwise."""
    webhook_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    if not webhook_id or not stamp or not headers.get("webhook-signature"):
        raise Rejected(401, "signature", "missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        skew = abs((now or time.time()) - float(stamp))
    except ValueError:
        raise Rejected(401, "timestamp", "webhook-timestamp is not a number") from None
    if skew > TOLERANCE_SECONDS:
        raise Rejected(401, "timestamp", "webhook-timestamp is more than 5 minutes off")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "malformed", "body is not UTF-8") from None
    wanted = {"webhook-id": webhook_id, "webhook-timestamp": stamp, "webhook-signature": headers["webhook-signature"]}
    for verifier in verifiers:
        try:
            verifier.verify(text, wanted, json_parse=False)
            return webhook_id
        except Exception:  # noqa: BLE001 - any failure is a rejection
            continue
    raise Rejected(401, "signature", "no valid signature for any configured secret")
