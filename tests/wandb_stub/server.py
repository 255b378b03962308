"""A W&B server stand-in on 127.0.0.1 that the real wandb 0.31 client (and wandb-core) talks to unchanged.

It answers GraphQL by operation name (see :mod:`tests.wandb_stub.graphql`), the run file stream and file uploads,
keeps sweeps, runs and history in memory, logs every request for tests to assert on, and can fail a share of
requests the way a real network does (5xx, 429 with Retry-After, a dropped connection) or refuse the key (401).
The operations it answers were recorded from the real client (``tests/wandb_stub/recordings/``).
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.wandb_stub.graphql import handle_graphql
from tests.wandb_stub.state import State


@dataclass
class Logged:
    """One request the stub received (the API key replaced by whether it matched)."""

    method: str
    path: str
    op: str | None
    variables: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    authorized: bool = True
    status: int = 200
    at: float = field(default_factory=time.time)


@dataclass
class Faults:
    """What share of requests fail, and how (``kinds`` from ``500``, ``503``, ``429``, ``drop``)."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ("500", "503", "429", "drop")
    seed: int = 0
    injected: int = 0
    rng: random.Random = field(default_factory=random.Random)
    queued: list[str] = field(default_factory=list)  # faults for the very next requests, in order


_OP = re.compile(r"\b(query|mutation)\s+(\w+)")


class StubServer:
    """The stub: ``start()`` it, point ``WANDB_BASE_URL`` at :attr:`url`, read :attr:`log` and :attr:`state`."""

    def __init__(self, api_key: str, entity: str = "stub-team") -> None:
        self.api_key = api_key
        self.state = State(entity=entity)
        self.log: list[Logged] = []
        self.faults = Faults()
        self.reject_key = False
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> StubServer:
        stub = self

        class Handler(_Handler):
            server_ref = stub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="wandb-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def fail(self, rate: float, kinds: tuple[str, ...] = ("500", "503", "429", "drop"), seed: int = 0) -> None:
        """Fail ``rate`` of the requests from now on, with one of ``kinds`` each."""
        self.faults = Faults(rate=rate, kinds=kinds, seed=seed, rng=random.Random(seed))

    def fail_next(self, *kinds: str) -> None:
        """Fail the next ``len(kinds)`` requests, one kind each, in order (then answer normally)."""
        with self._lock:
            self.faults.queued.extend(kinds)

    def ops(self, name: str | None = None) -> list[Logged]:
        """The GraphQL requests received (all, or those of operation ``name``), oldest first."""
        with self._lock:
            return [r for r in self.log if r.op is not None and (name is None or r.op == name)]

    def record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)

    def authorized(self, header: str | None) -> bool:
        if self.reject_key or not header or not header.startswith("Basic "):
            return False
        try:
            user_pass = base64.b64decode(header[6:]).decode()
        except ValueError:
            return False
        return user_pass.partition(":")[2] == self.api_key

    def draw_fault(self) -> str | None:
        with self._lock:
            if self.faults.queued:
                self.faults.injected += 1
                return self.faults.queued.pop(0)
            if self.faults.rate and self.faults.rng.random() < self.faults.rate:
                self.faults.injected += 1
                return self.faults.rng.choice(self.faults.kinds)
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_ref: StubServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stub's request log is :attr:`StubServer.log`."""

    def _read(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _fault(self, entry: Logged) -> bool:
        """Inject a transient failure (counted in the log with its status); True when the request is answered."""
        if self.path.startswith("/sdk/otel"):
            return False
        kind = self.server_ref.draw_fault()
        if kind is None:
            return False
        if kind == "drop":
            entry.status = 0
            self.server_ref.record(entry)
            self.close_connection = True
            self.connection.shutdown(2)  # the client sees a reset / an empty reply
            return True
        entry.status = int(kind)
        self.server_ref.record(entry)
        headers = {"Retry-After": "1"} if kind == "429" else None
        self._send(int(kind), {"errors": [{"message": f"injected {kind}"}]}, headers)
        return True

    def do_GET(self) -> None:
        self._read()
        self._send(200, {})

    def do_PUT(self) -> None:
        """File uploads to the URLs ``CreateRunFiles`` handed out: accepted and dropped."""
        self._read()
        self.server_ref.record(Logged("PUT", self.path, None))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        raw = self._read()
        stub = self.server_ref
        if self.path.startswith("/sdk/otel"):  # wandb-core's own telemetry
            self._send(200, {})
            return
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"raw": raw[:200].decode(errors="replace")}
        op = None
        if self.path.rstrip("/").endswith("/graphql") and isinstance(body, dict):
            match = _OP.search(body.get("query") or "")
            op = body.get("operationName") or (match.group(2) if match else None)
        entry = Logged("POST", self.path, op, (body.get("variables") or {}) if op else {}, None if op else body)
        entry.authorized = stub.authorized(self.headers.get("Authorization"))
        if self._fault(entry):
            return
        stub.record(entry)
        if not entry.authorized:
            entry.status = 401
            self._send(401, {"errors": [{"message": "user is not logged in"}]})
            return
        if op is not None:
            status, payload = handle_graphql(stub, op, body.get("query") or "", entry.variables)
            entry.status = status
            self._send(status, payload)
            return
        match = re.fullmatch(r"/files/([^/]+)/([^/]+)/([^/]+)/file_stream", self.path)
        if match:
            stub.state.file_stream(match.group(1), match.group(2), match.group(3), body)
            self._send(200, {"exitcode": None, "limits": {}})
            return
        self._send(200, {})
