"""A small local HTTP server for tests that talk to the real ccxt client: real payloads by path.

``LocalHttpServer`` runs the stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (a random free port)
in a background thread. Register what each path answers (a body, or a callable that sees the
request and may answer differently per query), make a path fail (an HTTP status such as 500 or
429, or a dropped connection), count and inspect the requests, and stop it within a bound::

    with LocalHttpServer() as server:
        server.route("/api/v3/ticker/24hr", Path("ticker_24hr_response.json").read_text())
        server.fail("/api/v3/ticker/24hr", 429, times=1)
        ... server.url ...                     # "http://127.0.0.1:<port>"
        assert server.count("/api/v3/ticker/24hr") == 2

A path nobody registered answers 404 (with a JSON body) and is recorded in ``unrouted``, so a
test can assert the client asked for nothing it did not expect. No wait here is unbounded: a
``delay_s`` route waits on the server's stop event, and ``stop`` joins with a timeout.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union
from urllib.parse import parse_qs, urlsplit

DROP = "drop"  # ``fail(path, DROP)``: close the connection without answering


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: str = ""

    def arg(self, name: str) -> str | None:
        """The first value of query parameter ``name`` (``None`` if absent)."""
        values = self.query.get(name)
        return values[0] if values else None

    def param(self, name: str) -> str | None:
        """The first value of ``name`` in the query or in a form-encoded body (a signed POST)."""
        found = self.arg(name)
        if found is None and self.body:
            values = parse_qs(self.body, keep_blank_values=True).get(name)
            found = values[0] if values else None
        return found


@dataclass(frozen=True)
class Response:
    """What a callable route may return when it needs a status or headers of its own."""

    body: Any = b""
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


Body = Union[str, bytes, dict, list]
Handler = Callable[[Request], Union[Body, Response]]


@dataclass
class _Route:
    answer: Body | Handler
    status: int = 200
    content_type: str = "application/json"
    delay_s: float = 0.0


@dataclass
class _Failure:
    mode: int | str  # an HTTP status, or DROP
    remaining: int | None  # None: until healed
    body: Body | None


def _encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


class LocalHttpServer:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 answering registered paths (see the module doc)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._routes: dict[str, _Route] = {}
        self._failures: dict[str, _Failure] = {}
        self._counts: dict[str, int] = {}
        self.log: list[Request] = []  # every request, in arrival order
        self.unrouted: list[Request] = []  # requests to paths nobody registered
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- configuration ----------------------------------------------------------------------------

    def route(self, path: str, answer: Body | Handler, *, status: int = 200,
              content_type: str = "application/json", delay_s: float = 0.0) -> LocalHttpServer:
        """Answer ``path`` (any query) with ``answer``: a body (``str``/``bytes`` sent as is, a
        ``dict``/``list`` JSON-encoded) or a callable ``(Request) -> body | Response``."""
        with self._lock:
            self._routes[path] = _Route(answer, status, content_type, delay_s)
        return self

    def fail(self, path: str, mode: int | str = 500, *, times: int | None = None,
             body: Body | None = None) -> LocalHttpServer:
        """Make ``path`` answer HTTP ``mode`` (e.g. 500, 429) or drop the connection
        (``mode=DROP``), for the next ``times`` requests (``None``: until ``heal``)."""
        if mode != DROP and not (isinstance(mode, int) and 400 <= mode <= 599):
            raise ValueError(f"mode must be an HTTP error status or {DROP!r}, got {mode!r}")
        with self._lock:
            self._failures[path] = _Failure(mode, times, body)
        return self

    def heal(self, path: str | None = None) -> None:
        """Stop failing ``path`` (every path with ``None``)."""
        with self._lock:
            if path is None:
                self._failures.clear()
            else:
                self._failures.pop(path, None)

    # --- inspection -------------------------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        """Requests received for ``path`` (all requests with ``None``), failed ones included."""
        with self._lock:
            return sum(self._counts.values()) if path is None else self._counts.get(path, 0)

    def requests(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.log if path is None or r.path == path]

    def wait_for(self, path: str | None, count: int, timeout: float) -> bool:
        """``True`` once ``count(path) >= count``; ``False`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                done = (sum(self._counts.values()) if path is None else self._counts.get(path, 0)) >= count
                remaining = deadline - time.monotonic()
                if done or remaining <= 0:
                    return done
                self._changed.wait(remaining)

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash); only after ``start``."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalHttpServer:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = ThreadingHTTPServer((self._host, self._port), self._handler_class())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="test-http-server", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving and close the socket; idempotent, bounded by ``timeout``."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # releases delayed handlers
        server.shutdown()  # returns within one poll_interval of serve_forever
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> LocalHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving ----------------------------------------------------------------------------------

    def _answer(self, request: Request) -> tuple[int | str, bytes, dict[str, str], float]:
        """(status or DROP, body, headers, delay) for one request; counts it."""
        with self._changed:
            self._counts[request.path] = self._counts.get(request.path, 0) + 1
            self.log.append(request)
            self._changed.notify_all()
            route = self._routes.get(request.path)
            failure = self._failures.get(request.path)
            if failure is not None:
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        del self._failures[request.path]
                if failure.mode == DROP:
                    return DROP, b"", {}, 0.0
                status = int(failure.mode)
                body = failure.body if failure.body is not None else {"code": -status, "msg": f"test server: HTTP {status}"}
                return status, _encode(body), {"Content-Type": "application/json"}, 0.0
            if route is None:
                self.unrouted.append(request)
                body = {"code": -404, "msg": f"test server: no route for {request.path}"}
                return 404, _encode(body), {"Content-Type": "application/json"}, 0.0
        try:
            answer = route.answer(request) if callable(route.answer) else route.answer
        except Exception as exc:  # noqa: BLE001 - a broken test handler answers 500, visibly
            body = {"code": -500, "msg": f"test server: handler for {request.path} failed: {exc!r}"}
            return 500, _encode(body), {"Content-Type": "application/json"}, 0.0
        headers = {"Content-Type": route.content_type}
        if isinstance(answer, Response):
            headers.update(answer.headers)
            return answer.status, _encode(answer.body), headers, route.delay_s
        return route.status, _encode(answer), headers, route.delay_s

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""
                request = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                                  {k: v for k, v in self.headers.items()}, body)
                status, body, headers, delay_s = owner._answer(request)
                if delay_s > 0 and owner._stopping.wait(delay_s):
                    status = DROP  # the server is stopping: do not answer late
                if status == DROP:
                    self.close_connection = True
                    return
                self.send_response(int(status))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    try:
                        self.wfile.write(body)
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True  # the client gave up waiting (a timeout test)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                pass  # quiet: the server keeps its own log

        return _Handler
