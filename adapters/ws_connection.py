"""One live websocket connection on its own thread: connect, subscribe, keep alive, notice
silence, reconnect with jittered exponential backoff. The transport under the live market
sources; it knows nothing of any exchange's frames (the parser is the ``on_text`` callable).

**Owns** one daemon thread per ``start`` and the socket of the moment (websocket-client's
low-level ``WebSocket``: every wait in the thread is a socket timeout or an ``Event.wait``, so
there is no second thread, no sleep, and ``stop`` is prompt), the counters of ``stats()``, and
the backoff policy (``adapters.backoff``).

**A connection** (``state`` goes ``connecting`` -> ``open``):
``url`` (a string, or a callable asked at every attempt) is opened with ``open_timeout_s``
bounding the TCP connect and the handshake; every text of ``subscribe()`` (called again at each
connect, so a reconnect resubscribes) is sent; then frames are read. Each text frame goes to
``on_text(text, received_ns)`` with ``received_ns = time.time_ns()`` taken as the frame is
read. ``on_text`` runs on this thread: it must be quick (parse, hand on); while it blocks
nothing is read and no server ping is answered (time spent in it does not count as silence,
but Binance drops a client that leaves its ping unanswered for a minute). Whatever it raises is
logged (``WS_ON_TEXT_FAILED``: the first ten with their traceback, then one line every 1000),
counted in ``errors`` and never ends the thread. Binary frames are counted and ignored.

**Keepalive.** Every ``ping_interval_s`` (``None`` for never) a websocket ping goes out and,
when ``ping_payload`` is given and returns text, an application-level ping text too (Bybit's
``{"op":"ping"}``). Pings *from the server* (Binance sends one every 20 s or 3 min and drops a
client that does not answer) are answered by websocket-client with a pong carrying the same
payload, as the reader sees them; they are counted in ``pings_received``.

**Silence.** With ``silence_timeout_s``, a connection on which no frame at all (data, ping,
pong, close) has arrived for that long is dead whatever the socket says: ``WS_SILENT``, closed,
reconnected with backoff. Choose it above the ping interval, so an answered ping keeps an idle
link alive and an unanswered one does not. Per-symbol staleness is the Feed's job, not this one.

**Planned reconnects** happen without any backoff delay: at ``max_lifetime_s`` (Binance closes
a connection at 24 h; give it e.g. 23.5 h) and on ``reconnect(reason)`` (from any thread, e.g.
when the Feed changed the subscriptions or saw Binance's ``serverShutdown`` event). The old
connection is closed first (a close frame is sent, the reply is not awaited), then a new one is
opened at once: a gap of one connect, logged as ``WS_PLANNED_RECONNECT``.

**Failures.** A refused or timed-out connect, a dropped or reset connection, a protocol error,
a close frame from the server or silence: the state goes to ``backoff`` and the thread waits
``backoff.next_delay()`` before the next attempt. A connection is *healthy*, and the backoff is
reset, once it has delivered ``healthy_after_frames`` (10) text frames, or has stayed open
``healthy_after_s`` (30 s) having delivered at least one: a server that accepts and drops at
once keeps the delays growing, a stream that worked for a while comes back after ``first_s``.

**Log codes** (``actor=feed``, the connection's name in brackets at the end): ``WS_CONNECTED``,
``WS_CONNECT_FAILED: <reason>``, ``WS_DISCONNECTED: <reason>``, ``WS_RECONNECT_IN: <delay>s
(attempt N)``, ``WS_SILENT: no frame for X s``, ``WS_PLANNED_RECONNECT: <why>``,
``WS_ON_TEXT_FAILED``, ``WS_STOP_SLOW``. URLs are logged as scheme, host and port only (a path
may hold a listen key).

**On stop** (``stop()``, any thread, idempotent; also from inside ``on_text``) the socket is
shut down, which wakes a blocked read or websocket handshake at once, a backoff wait ends, and
the thread is joined for at most ``JOIN_TIMEOUT_S``. The waits ``stop`` cannot cut short are a
DNS lookup, a TCP connect and a TLS handshake in progress (websocket-client hands the socket out
only after them): each is bounded by ``open_timeout_s`` (DNS by the resolver), and the thread, a
daemon, ends by itself when it returns (``WS_STOP_SLOW`` is logged if the join times out).
"""

from __future__ import annotations

import contextlib
import math
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import websocket
from loguru import logger

from adapters.backoff import Backoff

STATES = ("connecting", "open", "backoff", "stopped")
JOIN_TIMEOUT_S = 2.0  # stop() waits at most this long for the thread
POLL_S = 0.25  # the longest a read blocks before the thread looks at its clocks again
STOP_SLICE_S = 0.05  # stop() re-aborts the socket this often while it waits for the thread
HEALTHY_AFTER_FRAMES = 10  # text frames after which a connection counts as healthy ...
HEALTHY_AFTER_S = 30.0  # ... or seconds open (with at least one text frame)
ERRORS_LISTED = 10  # on_text failures logged with a traceback; after that ...
ERRORS_SUMMARY_EVERY = 1000  # ... one line every this many


def _check_positive(name: str, value: float | None, *, optional: bool) -> None:
    if value is None and optional:
        return
    if (not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)
            or value <= 0):
        allowed = "a positive number of seconds" + (" or None" if optional else "")
        raise ValueError(f"{name}: must be {allowed}, got {value!r}")


def check_url(url: str) -> str:
    """``url`` itself if it is a ``ws://`` or ``wss://`` URL with a host, else ``ValueError``."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"url: must be a ws:// or wss:// URL with a host, got {url!r}")
    return url


def redact_url(url: str) -> str:
    """Scheme, host and port only: what may be logged of a URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<bad url>"
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "<bad url>"


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass
class _Run:
    """One ``start``: its thread and its stop flag (a thread that outlived ``stop`` only ever
    sees its own flag, so a later ``start`` cannot revive it)."""

    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class WsConnection:
    """A self-healing websocket connection on its own thread; see the module docstring."""

    def __init__(
        self,
        name: str,
        url: str | Callable[[], str],
        *,
        on_text: Callable[[str, int], None],
        subscribe: Callable[[], Iterable[str]] = lambda: [],
        on_state: Callable[[str, dict[str, Any]], None] | None = None,
        backoff: Backoff | None = None,
        ping_interval_s: float | None = 20.0,
        ping_payload: Callable[[], str | None] | None = None,
        silence_timeout_s: float | None = None,
        open_timeout_s: float = 10.0,
        max_lifetime_s: float | None = None,
        healthy_after_frames: int = HEALTHY_AFTER_FRAMES,
        healthy_after_s: float = HEALTHY_AFTER_S,
    ) -> None:
        """``name`` labels the thread and the log lines. ``url`` is a ``ws://``/``wss://`` URL or
        a callable returning one, asked at every attempt. ``on_text(text, received_ns)`` gets
        every text frame; ``subscribe()`` the texts to send after each connect; ``on_state(state,
        info)`` every change of ``state`` (``info``: ``reconnects``, ``connects``, ``reason``,
        ``delay``, ``attempt``). The remaining arguments are described in the module docstring.
        Raises ``ValueError`` naming the argument for a bad value (a callable ``url`` is checked
        at each call instead; a bad one fails that attempt)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: must be a non-empty string, got {name!r}")
        if not callable(url):
            check_url(url)
        for label, function in (("on_text", on_text), ("subscribe", subscribe)):
            if not callable(function):
                raise ValueError(f"{label}: must be callable, got {function!r}")
        _check_positive("ping_interval_s", ping_interval_s, optional=True)
        _check_positive("silence_timeout_s", silence_timeout_s, optional=True)
        _check_positive("open_timeout_s", open_timeout_s, optional=False)
        _check_positive("max_lifetime_s", max_lifetime_s, optional=True)
        _check_positive("healthy_after_s", healthy_after_s, optional=False)
        if not isinstance(healthy_after_frames, int) or healthy_after_frames < 1:
            raise ValueError(f"healthy_after_frames: must be a whole number >= 1, got {healthy_after_frames!r}")
        self.name = name
        self._url = url
        self._on_text = on_text
        self._subscribe = subscribe
        self._on_state = on_state
        self._backoff = backoff if backoff is not None else Backoff()
        self._ping_interval_s = ping_interval_s
        self._ping_payload = ping_payload
        self._silence_timeout_s = silence_timeout_s
        self._open_timeout_s = float(open_timeout_s)
        self._max_lifetime_s = max_lifetime_s
        self._healthy_after_frames = healthy_after_frames
        self._healthy_after_s = float(healthy_after_s)
        self._log = logger.bind(actor="feed", conn=name)

        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._ws: websocket.WebSocket | None = None  # the socket of the moment, for stop()
        self._reconnect_request: str | None = None
        # Counters: written by the connection's thread only, read by anyone through stats().
        self._state = "stopped"
        self._connected = False
        self._connects = 0
        self._reconnects = 0
        self._connect_failures = 0
        self._frames = 0
        self._errors = 0
        self._binary_ignored = 0
        self._pings_sent = 0
        self._pongs_received = 0
        self._pings_received = 0
        self._last_frame_ns: int | None = None
        self._last_reason: str | None = None
        self._url_shown = redact_url(url) if isinstance(url, str) else "<url()>"

    # --- control, from any thread ---------------------------------------------------------------

    def start(self) -> None:
        """Start the connection's daemon thread (nothing happens if it is already running)."""
        with self._lock:
            current = self._run
            if current is not None and not current.stopping.is_set() and current.thread is not None \
                    and current.thread.is_alive():
                return
            run = _Run()
            run.thread = threading.Thread(target=self._main, args=(run,), name=f"ws-{self.name}", daemon=True)
            self._run = run
            self._reconnect_request = None
        run.thread.start()

    def stop(self) -> None:
        """Close the connection and end the thread promptly; idempotent, from any thread (from
        the connection's own thread, e.g. inside ``on_text``, it does not wait for itself)."""
        with self._lock:
            run, ws = self._run, self._ws
        if run is None:
            return
        run.stopping.set()
        if ws is not None:
            _abort(ws)
        thread = run.thread
        if thread is None or thread is threading.current_thread():
            return
        # Join in short slices, aborting again each time: the socket a connect is creating
        # becomes reachable only once its TCP connect (and TLS handshake) returns.
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while thread.is_alive():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            thread.join(min(STOP_SLICE_S, remaining))
            with self._lock:
                ws = self._ws
            if ws is not None:
                _abort(ws)
        if thread.is_alive():
            self._log.warning("WS_STOP_SLOW: the thread did not end within {}s (in a TCP connect or DNS "
                              "lookup, bounded by open_timeout_s={}s) [{}]", JOIN_TIMEOUT_S,
                              self._open_timeout_s, self.name)

    def reconnect(self, reason: str = "requested") -> None:
        """Ask for a planned reconnect (no backoff delay) within ``POLL_S``; ignored unless a
        connection is open."""
        with self._lock:
            self._reconnect_request = reason

    @property
    def running(self) -> bool:
        with self._lock:
            run = self._run
        return (run is not None and not run.stopping.is_set() and run.thread is not None
                and run.thread.is_alive())

    @property
    def state(self) -> str:
        return self._state

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters. ``connects``: connections opened; ``reconnects``:
        attempts after the first (after a failure, a drop or a planned reconnect);
        ``connect_failures``: attempts that never opened; ``frames``: text frames handed to
        ``on_text``; ``errors``: exceptions raised by the callbacks (``on_text``, ``subscribe``,
        ``ping_payload``, ``on_state``, a callable ``url``); ``last_frame_ns``: wall time of the
        last frame of any kind; ``backoff_attempt``: delays since the backoff's last reset."""
        return {
            "name": self.name,
            "url": self._url_shown,
            "state": self._state,
            "connected": self._connected,
            "connects": self._connects,
            "reconnects": self._reconnects,
            "connect_failures": self._connect_failures,
            "frames": self._frames,
            "errors": self._errors,
            "binary_ignored": self._binary_ignored,
            "pings_sent": self._pings_sent,
            "pongs_received": self._pongs_received,
            "pings_received": self._pings_received,
            "last_frame_ns": self._last_frame_ns,
            "last_reason": self._last_reason,
            "backoff_attempt": self._backoff.attempts,
        }

    # --- the connection's thread ----------------------------------------------------------------

    def _main(self, run: _Run) -> None:
        reason: str | None = None  # why the previous attempt ended
        attempt = 0
        try:
            while not run.stopping.is_set():
                if attempt > 0:
                    self._reconnects += 1
                attempt += 1
                try:
                    reason, planned = self._attempt(run, reason)
                except Exception as error:  # noqa: BLE001 - a bug here must not end the feed
                    self._errors += 1
                    reason, planned = f"unexpected: {_describe(error)}", False
                    self._log.opt(exception=error).error("WS_DISCONNECTED: {} [{}]", reason, self.name)
                self._last_reason = reason
                if run.stopping.is_set():
                    break
                if planned:
                    continue
                delay = self._backoff.next_delay()
                number = self._backoff.attempts
                self._set_state(run, "backoff", reason=reason, delay=delay, attempt=number)
                self._log.info("WS_RECONNECT_IN: {:.2f}s (attempt {}) [{}]", delay, number, self.name)
                if run.stopping.wait(delay):
                    break
        finally:
            self._connected = False
            self._set_state(run, "stopped", reason="stopped", delay=None, attempt=self._backoff.attempts)

    def _attempt(self, run: _Run, previous: str | None) -> tuple[str, bool]:
        """One connection from connect to close: ``(why it ended, planned)``."""
        self._set_state(run, "connecting", reason=previous, delay=None, attempt=self._backoff.attempts)
        try:
            url = check_url(self._url()) if callable(self._url) else self._url
        except Exception as error:  # noqa: BLE001 - a callable url is the caller's code
            self._errors += 1
            self._connect_failures += 1
            reason = f"url() failed: {_describe(error)}"
            self._log.error("WS_CONNECT_FAILED: {} [{}]", reason, self.name)
            return reason, False
        shown = redact_url(url)
        self._url_shown = shown
        ws = websocket.WebSocket(skip_utf8_validation=True)  # text is decoded (and checked) in C below
        with self._lock:
            if run.stopping.is_set():
                return "stopped", False
            self._ws = ws
        graceful = False
        try:
            try:
                ws.connect(url, timeout=self._open_timeout_s)
            except Exception as error:  # noqa: BLE001 - refused, timed out, bad status, bad host ...
                if run.stopping.is_set():
                    return "stopped", False
                self._connect_failures += 1
                reason = f"connect failed: {_describe(error)}"
                self._log.warning("WS_CONNECT_FAILED: {} ({}) [{}]", reason, shown, self.name)
                return reason, False
            if run.stopping.is_set():
                return "stopped", False
            opened_at = time.monotonic()
            self._connects += 1
            self._connected = True
            with self._lock:
                self._reconnect_request = None  # this connection subscribes afresh anyway
            try:
                texts = list(self._subscribe())
            except Exception as error:  # noqa: BLE001 - the caller's code
                self._errors += 1
                self._log.opt(exception=error).error("WS_DISCONNECTED: subscribe() failed: {} [{}]",
                                                     _describe(error), self.name)
                return f"subscribe() failed: {_describe(error)}", False
            try:
                for text in texts:
                    ws.send(text)
            except Exception as error:  # noqa: BLE001 - the connection went away meanwhile
                if run.stopping.is_set():
                    return "stopped", False
                reason = f"subscribe send failed: {_describe(error)}"
                self._log.warning("WS_DISCONNECTED: {} [{}]", reason, self.name)
                return reason, False
            self._log.info("WS_CONNECTED: {} ({} subscription message(s), connect #{}) [{}]", shown,
                           len(texts), self._connects, self.name)
            self._set_state(run, "open", reason=None, delay=None, attempt=self._backoff.attempts)
            reason, planned = self._read(run, ws, opened_at)
            graceful = planned or run.stopping.is_set()
            if run.stopping.is_set():
                return "stopped", False
            if planned:
                self._log.info("WS_PLANNED_RECONNECT: {} [{}]", reason, self.name)
            else:
                self._log.warning("WS_DISCONNECTED: {} [{}]", reason, self.name)
            return reason, planned
        finally:
            with self._lock:
                if self._ws is ws:
                    self._ws = None
            self._connected = False
            _close(ws, graceful)

    def _read(self, run: _Run, ws: websocket.WebSocket, opened_at: float) -> tuple[str, bool]:
        """Read frames until the connection ends: ``(why, planned)``."""
        stopping = run.stopping
        interval = self._ping_interval_s
        silence = self._silence_timeout_s
        now = time.monotonic()
        last_rx = now
        next_ping = now + interval if interval is not None else math.inf
        end_of_life = opened_at + self._max_lifetime_s if self._max_lifetime_s is not None else math.inf
        frames = 0
        healthy = False
        timeout = -1.0
        while True:
            if stopping.is_set():
                return "stopped", True
            if self._reconnect_request is not None:
                with self._lock:
                    request, self._reconnect_request = self._reconnect_request, None
                if request is not None:
                    return f"reconnect requested: {request}", True
            now = time.monotonic()
            if now >= end_of_life:
                return f"max lifetime {self._max_lifetime_s:g}s reached", True
            if silence is not None and now - last_rx >= silence:
                self._log.warning("WS_SILENT: no frame for {:.1f}s (limit {:g}s) [{}]", now - last_rx, silence,
                                  self.name)
                return f"silent for {now - last_rx:.1f}s", False
            if not healthy and frames and (frames >= self._healthy_after_frames
                                           or now - opened_at >= self._healthy_after_s):
                healthy = True  # checked before every read, so before a drop can be seen
                self._backoff.reset()
            try:
                if now >= next_ping:
                    next_ping = now + interval  # type: ignore[operator]  # finite only with an interval
                    self._send_pings(ws)
                wait = min(POLL_S, next_ping - now, end_of_life - now,
                           last_rx + silence - now if silence is not None else math.inf)
                wait = max(wait, 0.001)
                if abs(wait - timeout) > 0.005:
                    ws.settimeout(wait)
                    timeout = wait
                try:
                    opcode, data = ws.recv_data(control_frame=True)
                except websocket.WebSocketTimeoutException:
                    continue
            except Exception as error:  # noqa: BLE001 - closed, reset, protocol error: all mean reconnect
                return ("stopped", True) if stopping.is_set() else (f"connection lost: {_describe(error)}", False)
            received_ns = time.time_ns()
            last_rx = time.monotonic()
            self._last_frame_ns = received_ns
            if opcode == websocket.ABNF.OPCODE_TEXT:
                try:
                    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
                except UnicodeDecodeError as error:
                    self._errors += 1
                    self._log.warning("WS_BAD_FRAME: text frame is not UTF-8 ({}) [{}]", error, self.name)
                    continue
                self._frames += 1
                frames += 1
                self._deliver(text, received_ns)
                # Time spent in on_text (a sink applying back-pressure) is not silence.
                last_rx = time.monotonic()
            elif opcode == websocket.ABNF.OPCODE_PING:
                self._pings_received += 1  # websocket-client has sent the pong already
            elif opcode == websocket.ABNF.OPCODE_PONG:
                self._pongs_received += 1
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                return f"closed by the server ({_close_reason(data)})", False
            else:
                self._binary_ignored += 1
                if self._binary_ignored == 1:
                    self._log.warning("WS_BINARY_IGNORED: binary frames are not handled [{}]", self.name)

    def _send_pings(self, ws: websocket.WebSocket) -> None:
        ws.ping()
        self._pings_sent += 1
        if self._ping_payload is None:
            return
        try:
            text = self._ping_payload()
        except Exception as error:  # noqa: BLE001 - the caller's code
            self._errors += 1
            self._log.opt(exception=error).error("WS_PING_PAYLOAD_FAILED: {} [{}]", _describe(error), self.name)
            return
        if text:
            ws.send(text)

    def _deliver(self, text: str, received_ns: int) -> None:
        try:
            self._on_text(text, received_ns)
        except Exception as error:  # noqa: BLE001 - a parser bug must not end the feed
            self._errors += 1
            count = self._errors
            if count <= ERRORS_LISTED:
                self._log.opt(exception=error).error("WS_ON_TEXT_FAILED: {} on {!r} [{}]", _describe(error),
                                                     text[:200], self.name)
            elif count % ERRORS_SUMMARY_EVERY == 0:
                self._log.error("WS_ON_TEXT_FAILED: {} callback errors so far; latest {} [{}]", count,
                                _describe(error), self.name)

    def _set_state(self, run: _Run, state: str, **info: Any) -> None:
        if self._run is not run or state == self._state:
            return  # a thread that outlived its stop() no longer speaks for the connection
        self._state = state
        if self._on_state is None:
            return
        details = {"reconnects": self._reconnects, "connects": self._connects, **info}
        try:
            self._on_state(state, details)
        except Exception as error:  # noqa: BLE001 - the caller's code
            self._errors += 1
            self._log.opt(exception=error).error("WS_ON_STATE_FAILED: {} [{}]", _describe(error), self.name)


def _abort(ws: websocket.WebSocket) -> None:
    """Wake the connection's thread out of a read or a handshake (any thread)."""
    sock = ws.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _close(ws: websocket.WebSocket, graceful: bool) -> None:
    """Close without waiting for the peer: a close frame first when the link is believed good."""
    if graceful and ws.connected:
        with contextlib.suppress(Exception):
            ws.send_close(websocket.STATUS_NORMAL)
    with contextlib.suppress(Exception):
        ws.shutdown()


def _close_reason(data: bytes) -> str:
    if len(data) >= 2:
        code = struct.unpack("!H", data[:2])[0]
        text = data[2:].decode("utf-8", "replace")
        return f"code {code}{': ' + text if text else ''}"
    return "no code"
