"""`Sandbox`: start the sandbox server, in this process or a subprocess.

Both modes serve real HTTP on loopback. The subprocess mode (the default) runs
`python -m makini_sandbox --port 0 ...` and reads the one JSON line it
prints when ready; it keeps the server's CPU work (and GIL) away from the
process under test, which matters for benchmarks. The in-process mode runs the
server on a daemon thread; it starts faster and suits small test fixtures.

A fleet: `connections=1000` with small `sizes` starts in a few seconds.
`rate_limit_per_minute` is the requests each connection may make per window
(`rate_window_seconds`, default 60, so per minute by default); `latency_ms`
delays every API response. All three can be changed at run time through
`control` (`set_rate_limit`, `set_latency`), also per connection.

`shapes` (makini_sandbox/shapes.py) picks each connection's deployment shape:
one spec per connection, or one for all; None keeps every connection default
(exactly the sandbox as it always was).
"""
from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import orjson

from .client import SandboxControl
from .entities import resolve_sizes
from .faults import rate_limit
from .latency import checked_latency_ms
from .shapes import resolve_shapes

log = logging.getLogger(__name__)

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Sandbox:
    """Context manager: `with Sandbox(seed=7, sizes={...}) as sb: sb.base_url, sb.tokens`."""

    def __init__(self, seed: int = 7, sizes: dict[str, int] | None = None, connections: int = 2,
                 in_process: bool = False, rate_limit_per_minute: int = 10_000,
                 host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 180.0,
                 shapes: str | list[str] | None = None, rate_window_seconds: float = 60.0,
                 latency_ms: float = 0.0) -> None:
        self.seed = seed
        self.sizes = resolve_sizes(sizes)
        self.n_connections = connections
        resolve_shapes(shapes, connections)  # fail here, not in the server, on a bad spec
        rate_limit(rate_limit_per_minute, rate_window_seconds)  # ... and on a bad limit or latency
        checked_latency_ms(latency_ms)
        self.shapes = shapes
        self.in_process = in_process
        self.rate_limit_per_minute = rate_limit_per_minute
        self.rate_window_seconds = rate_window_seconds
        self.latency_ms = latency_ms
        self.host, self.port = host, port
        self.startup_timeout = startup_timeout
        self.base_url: str = ""
        self.connections: list[dict] = []
        self.control: SandboxControl | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def tokens(self) -> list[str]:
        return [c["token"] for c in self.connections]

    def __enter__(self) -> "Sandbox":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if self.in_process:
            self._start_thread()
        else:
            self._start_subprocess()
        self.control = SandboxControl(self.base_url)
        log.info("sandbox ready at %s with %d connection(s)", self.base_url, len(self.connections))

    def _start_thread(self) -> None:
        from .server import SandboxHTTPServer
        from .state import SandboxState

        state = SandboxState(self.seed, self.sizes, self.n_connections, self.rate_limit_per_minute,
                             shapes=self.shapes, rate_window_seconds=self.rate_window_seconds,
                             latency_ms=self.latency_ms)
        self._server = SandboxHTTPServer(state, self.host, self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="makini-sandbox", daemon=True)
        self._thread.start()
        self.base_url = self._server.base_url
        self.connections = [c.public() for c in state.connections]

    def _start_subprocess(self) -> None:
        cmd = [sys.executable, "-m", "makini_sandbox",
               "--host", self.host, "--port", str(self.port),
               "--seed", str(self.seed), "--connections", str(self.n_connections),
               "--rate-limit", str(self.rate_limit_per_minute),
               "--rate-window", repr(float(self.rate_window_seconds)),
               "--latency-ms", repr(float(self.latency_ms))]
        for entity in self.sizes:
            cmd += [f"--{entity}", str(self.sizes[entity])]
        if self.shapes is not None:
            cmd += ["--shapes", orjson.dumps(self.shapes).decode()]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=_PROJECT_ROOT, env=env)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: lines.put(self._proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=self.startup_timeout)
        except queue.Empty:
            self.stop()
            raise TimeoutError(f"sandbox did not start within {self.startup_timeout} s") from None
        if not line:
            code = self._proc.wait()
            raise RuntimeError(f"sandbox subprocess exited with code {code} before it was ready (see its stderr)")
        ready = orjson.loads(line)
        self.base_url = ready["base_url"]
        self.connections = ready["connections"]

    def stop(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None
