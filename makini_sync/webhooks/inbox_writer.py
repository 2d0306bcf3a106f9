"""The inbox writer: a child process of the receiver that verifies and stores webhooks.

    receiver event loop --requests--> inbox writer --replies--> receiver event loop
                                      (verify, check, INSERT, fsync)

Why a process: the receiver's event loop is the one thread that answers
every connection, so nothing slow may run on it. In the loop, verification,
the SQLite append and the fsync (far slower on a slow disk, with the loop
stalled throughout) took half of its time. A writer thread does not help: it
needs the GIL between SQLite calls and waits for it behind the busy loop,
which showed as a high p99 (benchmarks/receiver_benchmark.py). A process has its own interpreter and uses the second core; the
loop is left with reading bodies and answering, and stays responsive while a
commit waits on the disk.

Durability is unchanged: the writer replies only after the batch's COMMIT
(WAL, ``synchronous=FULL``), and the receiver answers 200 only on that reply.
Batching is natural: while the writer commits, requests pile up in the
socket, and the next batch takes all of them (one INSERT, one fsync).

The wire format is fixed-size headers plus bytes, one socketpair, no
pickling:

* handshake (receiver -> writer): ``<I`` length + JSON list of the webhook secrets;
* request: ``<IIHHH`` seq, body length, id length, timestamp length,
  signature length, then those four byte strings (id, timestamp, signature, body);
* reply: ``<IHH`` seq, HTTP status, text length, then the text: ``stored`` or
  ``duplicate`` for a 200, ``reason\\nmessage`` otherwise.

Run as ``python -m makini_sync.webhooks.inbox_writer --fd N --inbox PATH``;
the receiver starts it (``InboxWriterClient`` in ``writer_client.py``) and it
exits when the receiver's end of the socket closes.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import struct
import sys
import threading
from typing import Optional, Sequence

import orjson

from makini_sync.webhooks.inbox import Inbox
from makini_sync.webhooks.signatures import Rejected, parse_secrets, verify

logger = logging.getLogger(__name__)

HANDSHAKE = struct.Struct("<I")
REQUEST = struct.Struct("<IIHHH")
REPLY = struct.Struct("<IHH")
RECV_BYTES = 1 << 20

Request = tuple[int, bytes, bytes, bytes, bytes]  # seq, webhook-id, timestamp, signature, body


def encode_request(seq: int, webhook_id: bytes, stamp: bytes, signature: bytes, body: bytes) -> bytes:
    # header values are capped by the HTTP server well below 64 KiB; bodies by MAX_BODY
    return b"".join((REQUEST.pack(seq, len(body), len(webhook_id), len(stamp), len(signature)),
                     webhook_id, stamp, signature, body))


def decode_requests(buffer: bytearray) -> list[Request]:
    """The complete requests at the start of ``buffer``, removed from it."""
    requests, offset, size = [], 0, len(buffer)
    view = memoryview(buffer)
    while size - offset >= REQUEST.size:
        seq, body_len, id_len, stamp_len, sig_len = REQUEST.unpack_from(buffer, offset)
        start = offset + REQUEST.size
        end = start + id_len + stamp_len + sig_len + body_len
        if end > size:
            break
        a, b, c = start + id_len, start + id_len + stamp_len, start + id_len + stamp_len + sig_len
        requests.append((seq, bytes(view[start:a]), bytes(view[a:b]), bytes(view[b:c]), bytes(view[c:end])))
        offset = end
    view.release()
    del buffer[:offset]
    return requests


def encode_reply(seq: int, status: int, text: bytes) -> bytes:
    return REPLY.pack(seq, status, len(text)) + text


def decode_replies(buffer: bytearray) -> list[tuple[int, int, bytes]]:
    """The complete replies at the start of ``buffer``, removed from it."""
    replies, offset, size = [], 0, len(buffer)
    while size - offset >= REPLY.size:
        seq, status, text_len = REPLY.unpack_from(buffer, offset)
        end = offset + REPLY.size + text_len
        if end > size:
            break
        replies.append((seq, status, bytes(buffer[offset + REPLY.size:end])))
        offset = end
    del buffer[:offset]
    return replies


def check_event(body: bytes) -> dict:
    """The event: a Makini event is a JSON object with a string ``type``; anything else is a 400."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Rejected(400, "malformed", "body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise Rejected(400, "malformed", "body is not a Makini event (an object with a type)")
    return event


def rejection_text(rejected: Rejected) -> bytes:
    return f"{rejected.reason}\n{rejected}".encode()


Accepted = tuple[int, str, bytes]  # seq, verified webhook-id, body


def screen(verifiers: Sequence, requests: list[Request]) -> tuple[list[Accepted], list[bytes]]:
    """Verify and check every request: the accepted ones, and the replies for the rejected."""
    accepted: list[Accepted] = []
    rejections: list[bytes] = []
    for seq, webhook_id, stamp, signature, body in requests:
        headers = {"webhook-id": webhook_id.decode("latin-1"), "webhook-timestamp": stamp.decode("latin-1"),
                   "webhook-signature": signature.decode("latin-1")}
        try:
            verified_id = verify(verifiers, body, headers)
            check_event(body)
        except Rejected as rejected:
            rejections.append(encode_reply(seq, rejected.status, rejection_text(rejected)))
        else:
            accepted.append((seq, verified_id, body))
    return accepted, rejections


def commit(inbox: Inbox, accepted: list[Accepted]) -> bytes:
    """Store the accepted events in one transaction; the replies (200 stored/duplicate, or 503 for all)."""
    if not accepted:
        return b""
    try:
        stored = inbox.append((webhook_id, body) for _, webhook_id, body in accepted)
    except Exception as exc:  # noqa: BLE001 - every waiting request is told, none is acknowledged
        logger.exception("inbox append failed")
        text = rejection_text(Rejected(503, "store", f"the inbox could not store the event ({type(exc).__name__}); retry"))
        return b"".join(encode_reply(seq, 503, text) for seq, _, _ in accepted)
    return b"".join(encode_reply(seq, 200, b"stored" if new else b"duplicate")
                    for (seq, _, _), new in zip(accepted, stored, strict=True))


def read_handshake(sock: socket.socket) -> list[str]:
    header = recv_exactly(sock, HANDSHAKE.size)
    return orjson.loads(recv_exactly(sock, HANDSHAKE.unpack(header)[0]))


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise EOFError("the receiver closed the inbox writer's socket during the handshake")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class Committer:
    """Commits what the reading thread screened, and sends the replies, from a thread of its own.

    Two stages overlap: while one batch's COMMIT waits for its fsync (SQLite
    runs it without the GIL), the reading thread verifies the next. The
    committer takes everything queued since its last commit as one batch.
    """

    def __init__(self, sock: socket.socket, inbox: Inbox) -> None:
        self.sock, self.inbox = sock, inbox
        self._queue: list[tuple[list[Accepted], list[bytes]]] = []
        self._ready = threading.Condition()
        self._closed = False
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="inbox-commit", daemon=True)
        self._thread.start()

    def put(self, accepted: list[Accepted], rejections: list[bytes]) -> None:
        with self._ready:
            if self.error is not None:
                raise self.error
            self._queue.append((accepted, rejections))
            self._ready.notify()

    def close(self) -> None:
        """Commit and answer what is queued, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()

    def _run(self) -> None:
        try:
            while True:
                with self._ready:
                    while not self._queue and not self._closed:
                        self._ready.wait()
                    if not self._queue:
                        return
                    batches, self._queue = self._queue, []
                accepted = [event for batch, _ in batches for event in batch]
                replies = commit(self.inbox, accepted)
                self.sock.sendall(b"".join([replies, *(r for _, rejections in batches for r in rejections)]))
        except BaseException as exc:  # noqa: BLE001 - the reading thread re-raises it
            with self._ready:
                self.error = exc
            self.sock.shutdown(socket.SHUT_RDWR)


def serve(sock: socket.socket, inbox: Inbox) -> None:
    """Answer requests until the receiver closes its end; each read takes all that has arrived."""
    verifiers = parse_secrets(read_handshake(sock))
    # the two threads hand over the GIL often; the default 5 ms switch
    # interval would add up to 5 ms to a commit each time
    sys.setswitchinterval(0.0005)
    checkpointer = inbox.checkpoint_in_background()
    committer = Committer(sock, inbox)
    buffer = bytearray()
    try:
        while chunk := sock.recv(RECV_BYTES):  # blocks until the receiver sends something
            buffer += chunk
            requests = decode_requests(buffer)
            if requests:
                committer.put(*screen(verifiers, requests))
    finally:
        committer.close()
        checkpointer.stop()
    if committer.error is not None:
        raise committer.error


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the receiver's inbox writer (started by the receiver)")
    parser.add_argument("--fd", type=int, required=True, help="the socket inherited from the receiver")
    parser.add_argument("--inbox", required=True)
    args = parser.parse_args(argv)
    # Ctrl-C and a service manager's SIGTERM reach the whole process group;
    # the writer leaves when the receiver closes the socket, after answering
    # what it holds, so the receiver's graceful shutdown is not cut short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = socket.socket(fileno=args.fd)
    try:
        serve(sock, Inbox(args.inbox))
    except (EOFError, ConnectionError):
        pass  # the receiver went away; everything acknowledged is already committed
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
