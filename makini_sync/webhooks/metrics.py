"""Prometheus text for the receiver: request counters plus the inbox's state."""

from __future__ import annotations

from collections import Counter

REASONS = ("signature", "timestamp", "malformed", "too_large", "store")


def render_metrics(counters: Counter, inbox: dict) -> str:
    lines = [
        "# HELP makini_webhooks_received_total Webhook requests received.",
        "# TYPE makini_webhooks_received_total counter",
        f"makini_webhooks_received_total {counters['received']}",
        "# HELP makini_webhooks_rejected_total Webhook requests rejected, by reason.",
        "# TYPE makini_webhooks_rejected_total counter",
        *(f'makini_webhooks_rejected_total{{reason="{r}"}} {counters[f"rejected:{r}"]}' for r in REASONS),
        "# HELP makini_webhooks_stored_total Events stored in the inbox (duplicates excluded).",
        "# TYPE makini_webhooks_stored_total counter",
        f"makini_webhooks_stored_total {counters['stored']}",
        "# HELP makini_webhooks_duplicates_total Deliveries of an already stored webhook-id.",
        "# TYPE makini_webhooks_duplicates_total counter",
        f"makini_webhooks_duplicates_total {counters['duplicate']}",
        "# HELP makini_webhooks_queued Events waiting to be processed.",
        "# TYPE makini_webhooks_queued gauge",
        f"makini_webhooks_queued {inbox['pending']}",
        "# HELP makini_webhooks_processed Events processed and kept in the idempotency ledger.",
        "# TYPE makini_webhooks_processed gauge",
        f"makini_webhooks_processed {inbox['done']}",
        "# HELP makini_webhooks_failed Queued events whose processing failed at least once.",
        "# TYPE makini_webhooks_failed gauge",
        f"makini_webhooks_failed {inbox['failing']}",
        "# HELP makini_webhooks_dead_lettered Events moved to the dead-letter store.",
        "# TYPE makini_webhooks_dead_lettered gauge",
        f"makini_webhooks_dead_lettered {inbox['dead']}",
        "# HELP makini_webhooks_lag_seconds Age of the oldest queued event.",
        "# TYPE makini_webhooks_lag_seconds gauge",
        f"makini_webhooks_lag_seconds {inbox['lag_seconds']:.3f}",
    ]
    return "\n".join(lines) + "\n"
