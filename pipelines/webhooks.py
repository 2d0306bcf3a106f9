"""python -m pipelines.webhooks: the webhook receiver, the processor, the dead letters, reconcile.

    serve     [--port 8000] [--host 127.0.0.1] [--with-processor --destination NAME]
    process   [--once] [--destination NAME] [--poll-window SECONDS] [--ack-wait SECONDS] [--batch-size N]
    dlq       list | replay [WEBHOOK_ID ...]
    reconcile [--destination NAME] [--entities a,b] [--dry-run]   (= python -m pipelines.reconcile)

The webhook secret is dlt config ``sources.makini.webhook_secret`` (env
SOURCES__MAKINI__WEBHOOK_SECRET; a list during rotation). The inbox is
``./makini_webhooks.sqlite`` unless ``--inbox``, MAKINI_INBOX or dlt config
``sources.makini.webhook_inbox`` says otherwise (a file path, relative to the
working dir, or ``nats://HOST:PORT[/STREAM]`` for JetStream), so ``serve`` and
``process`` started alike find the same one.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Optional, Union

# only light modules here: a polling run's page workers import this module again, as a spawned
# process imports its parent's main module; dlt and the destinations are imported where used
from sources.makini.errors import ConfigurationError

if TYPE_CHECKING:
    from makini_sync.webhooks.inbox import Inbox
    from makini_sync.webhooks.jetstream_inbox import JetStreamInbox
    from makini_sync.webhooks.jetstream_processor import JetStreamProcessor

logger = logging.getLogger("makini_sync.webhooks")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.webhooks", description=__doc__.split("\n")[0])
    parser.add_argument("--inbox", default=None,
                        help="a file (SQLite, default ./makini_webhooks.sqlite) or nats://HOST:PORT[/STREAM] "
                             "(JetStream); env MAKINI_INBOX, or dlt config sources.makini.webhook_inbox")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the receiver")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--with-processor", action="store_true", help="also process the inbox in this process")
    serve.add_argument("--destination", default="duckdb")
    process = sub.add_parser("process", help="merge stored events into the destination")
    process.add_argument("--once", action="store_true", help="drain the inbox and exit")
    process.add_argument("--destination", default="duckdb")
    process.add_argument("--poll-window", type=float, default=900.0,
                         help="sync a connection when no webhook came for it for this many seconds (default 900)")
    process.add_argument("--max-attempts", type=int, default=5)
    process.add_argument("--ack-wait", type=float, default=30.0,
                         help="JetStream: seconds before a dead processor's messages go to another (default 30; "
                              "applies when this processor creates the consumer)")
    process.add_argument("--batch-size", type=int, default=None, help="events per batch (default 2000, JetStream 500)")
    dlq = sub.add_parser("dlq", help="inspect or re-queue dead-lettered events")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("webhook_ids", nargs="*")
    reconcile = sub.add_parser("reconcile", help="python -m pipelines.reconcile: repair missing, stale and ghost rows")
    reconcile.add_argument("--destination", default="duckdb")
    reconcile.add_argument("--entities", default=None)
    reconcile.add_argument("--dry-run", action="store_true")
    return parser.parse_args(argv)


def webhook_secrets() -> list[str]:
    """The configured ``whsec_`` secrets, each checked (a malformed one is a configuration error)."""
    import dlt

    from makini_sync.webhooks.signatures import parse_secrets, secret_list

    secret: object = dlt.secrets.get("sources.makini.webhook_secret")  # one secret or a list
    if not secret:
        raise ConfigurationError(
            "no webhook secret: set sources.makini.webhook_secret (env SOURCES__MAKINI__WEBHOOK_SECRET)"
        )
    try:
        parse_secrets(secret)
        return secret_list(secret)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


AnyInbox = Union["Inbox", "JetStreamInbox"]


def processing_loop(inbox: AnyInbox, args: argparse.Namespace, stop: threading.Event, wake: threading.Event,
                    once: bool = False) -> int:
    import dlt

    from makini_sync.destinations.profiles import load_profile
    from makini_sync.scheduling.polling import PollingFallback
    from makini_sync.webhooks.inbox import Inbox
    from makini_sync.webhooks.jetstream_inbox import JetStreamInbox
    from makini_sync.webhooks.processor import Processor

    profile = load_profile(args.destination)
    polling = None
    if not once:
        polling = PollingFallback(profile, dlt.config.get("sources.makini.base_url"),
                                  dlt.secrets.get("sources.makini.api_token"), getattr(args, "poll_window", 900.0))
    batch_size = getattr(args, "batch_size", None)
    processor = Processor(inbox if isinstance(inbox, Inbox) else None, profile, batch_size=batch_size or 2000,
                          max_attempts=getattr(args, "max_attempts", 5),
                          on_lifecycle=polling.on_lifecycle if polling else None)
    jetstream: Optional["JetStreamProcessor"] = None
    if isinstance(inbox, JetStreamInbox):
        from makini_sync.webhooks.jetstream_processor import ConsumerOptions, JetStreamProcessor

        jetstream = JetStreamProcessor(inbox, processor, ConsumerOptions(
            batch_size=batch_size or 500, ack_wait=getattr(args, "ack_wait", 30.0), once=once))
    drainer: Union[Processor, "JetStreamProcessor"] = jetstream or processor
    try:
        while True:
            stats = drainer.drain()
            if stats.processed or stats.failed or stats.dead_lettered or stats.skipped:
                logger.info("processed %d, failed %d, dead-lettered %d, skipped (merged before) %d",
                            stats.processed, stats.failed, stats.dead_lettered, stats.skipped)
            if once:
                return 0 if not stats.failed else 1
            if polling is not None:
                polling.run_due()
            wake.wait(timeout=1.0)
            wake.clear()
            if stop.is_set():
                return 0
    finally:
        if jetstream is not None:
            jetstream.close()


def serve(inbox: AnyInbox, args: argparse.Namespace) -> int:
    import uvicorn

    from makini_sync.webhooks.receiver import create_app

    stop, wake = threading.Event(), threading.Event()
    app = create_app(webhook_secrets(), inbox, on_stored=wake.set if args.with_processor else None)
    if args.with_processor:
        threading.Thread(target=processing_loop, args=(inbox, args, stop, wake), daemon=True,
                         name="processor").start()
    # what is loaded by now lives as long as the process: keep it out of the
    # cyclic GC's full passes, which otherwise stall the loop now and then
    # (measured: most of the receiver's p99 acknowledgement latency)
    gc.freeze()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    stop.set()
    return 0


def dead_letters(inbox: AnyInbox, args: argparse.Namespace) -> int:
    from makini_sync.webhooks.inbox import Inbox
    from makini_sync.webhooks.jetstream_dlq import DeadLetterStream

    store = inbox if isinstance(inbox, Inbox) else DeadLetterStream(inbox)
    if args.action == "replay":
        print(f"re-queued {store.replay(args.webhook_ids or None)} event(s)")
        return 0
    for event in store.dead():
        print(f"{event.webhook_id}\tattempts={event.attempts}\t{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(event.received_at))}\t{event.last_error}")
    return 0


def reconcile_command(args: argparse.Namespace) -> int:
    """The same reconcile as ``python -m pipelines.reconcile``."""
    from pipelines.reconcile import run

    args.sandbox, args.dry_run = False, getattr(args, "dry_run", False)
    return run(args)


def main(argv: Optional[list[str]] = None) -> int:
    from makini_sync.webhooks.inbox import Inbox
    from makini_sync.webhooks.inbox_url import JetStreamAddress, inbox_location
    from makini_sync.webhooks.jetstream_inbox import BrokerUnreachable, JetStreamInbox

    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        location = inbox_location(args.inbox)
        inbox: AnyInbox = JetStreamInbox(location) if isinstance(location, JetStreamAddress) else Inbox(location)
        if args.command == "serve":
            return serve(inbox, args)
        if args.command == "process":
            return processing_loop(inbox, args, threading.Event(), threading.Event(), once=args.once)
        if args.command == "dlq":
            return dead_letters(inbox, args)
        return reconcile_command(args)
    except ConfigurationError as exc:
        print(f"makini webhooks: configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokerUnreachable as exc:
        print(f"makini webhooks: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
