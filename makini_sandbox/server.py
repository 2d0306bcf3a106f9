"""HTTP layer: a stdlib `ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive.

Why the stdlib server and not an ASGI stack: it needs no dependencies and
gives raw socket control, which the "dropped connection" fault needs (close
the socket without any response, as a crashed load balancer would). Each
response is written with one `sendall` and an exact Content-Length, with
Nagle off, so keep-alive clients never wait on delayed ACKs; the record bytes
are pre-serialized (store.py), so a page costs a join and a write.

One thread per client connection (keep-alive connections keep theirs), so a
fleet of hundreds of concurrent clients is served side by side; the latency
setting (latency.py) sleeps in that thread and holds no lock meanwhile.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import email.utils
import socket
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import api, control
from .state import Connection, SandboxState

log = logging.getLogger(__name__)


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog: a fleet's workers open hundreds of connections at once, and
    # a full backlog drops SYNs, which clients retry only after a second. The kernel
    # caps it at net.core.somaxconn.
    request_queue_size = 1024

    def __init__(self, state: SandboxState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        super().__init__((host, port), SandboxHandler)

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-request (a killed sync) is routine, not a traceback."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            log.debug("client %s went away", client_address)
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.state.close()  # stop webhook delivery with the server

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "MakiniSandbox/1.0"
    server: SandboxHTTPServer

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        request_id = "req_" + os.urandom(12).hex()
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        state = self.server.state
        try:
            if path.startswith(control.PREFIX):
                if not ipaddress.ip_address(self.client_address[0]).is_loopback:
                    resp = api.error(403, "FORBIDDEN", "the control API answers loopback clients only", request_id)
                else:
                    resp = control.handle(state, self.command, path, query, body, request_id)
            elif path.startswith("/api/"):
                conn = api.connection_for(state, self.headers.get("Authorization"))
                fault = state.faults.draw()
                # Latency and the slow fault are slept here, in this client's own thread, holding no lock.
                delay = state.latency.seconds(conn.id if conn else None) + fault.delay
                if delay:
                    time.sleep(delay)
                if fault.kind == "drop":
                    self._drop(path, conn)
                    return
                resp = api.handle(state, self.command, path, query, conn, request_id, fault.kind)
                if fault.kind == "cut":
                    self._write(resp, request_id, cut=True)
                    return
            else:
                resp = api.error(404, "NOT_FOUND", f"no such endpoint: {path}", request_id)
        except Exception:  # a bug must still produce a well-formed 500, not a hung client
            log.exception("sandbox failed on %s %s (request %s)", self.command, path, request_id)
            resp = api.error(500, "INTERNAL_ERROR", "sandbox internal error", request_id)
        self._write(resp, request_id)

    def _drop(self, path: str, conn: Connection | None) -> None:
        """The dropped-connection fault: close the socket without a response."""
        self.server.state.counter.record(conn.id if conn else api.UNAUTHENTICATED, api.route_key(path), "dropped")
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self, resp: api.Response, request_id: str, cut: bool = False) -> None:
        """The response; ``cut``: the cut-body fault, half the promised body, then the connection closes."""
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {resp.status} {reason}",
                 "Content-Type: application/json",
                 f"Content-Length: {len(resp.body)}",
                 f"X-Request-Id: {request_id}",
                 # the server's clock, as real servers send it (clients cap bookmarks with it)
                 f"Date: {email.utils.formatdate(self.server.state.clock.now_ms() / 1000, usegmt=True)}"]
        lines.extend(f"{k}: {v}" for k, v in resp.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.log_request(resp.status, len(resp.body))
        body = resp.body[: len(resp.body) // 2] if cut else resp.body
        try:
            self.wfile.write(head + body)
            if cut:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # the client hung up
            self.close_connection = True
