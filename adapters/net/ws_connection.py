"""One live websocket connection on its own thread: connect, subscribe, keep alive, notice
silence, reconnect with jittered exponential backoff. The transport under the live market
sources; it knows nothing of any exchange's frames (the parser is the ``on_text`` callable).

**Owns** one daemon thread per ``start`` and the sockets of the moment (websocket-client's
low-level ``WebSocket``; one, two during a handover: every wait in the thread is a socket
timeout, a ``selectors`` wait with a timeout or an ``Event.wait``, so there is no second
thread, no sleep, and ``stop`` is prompt), the counters of ``stats()``, and the backoff policy
(``adapters.net.backoff``).

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

**Planned reconnects** happen at ``max_lifetime_s`` (Binance closes a connection at 24 h; give
it e.g. 23.5 h) and on ``reconnect(reason)`` (from any thread, e.g. when the Feed changed the
subscriptions or saw Binance's ``serverShutdown`` event), logged as ``WS_PLANNED_RECONNECT:
<why>``. They are a *handover*, make-before-break, without a gap and without a backoff delay:

1. A new connection is opened and sent the texts of ``subscribe()`` while the old one stays
   open (the old one's frames wait in the kernel buffer during that connect, at most
   ``open_timeout_s``).
2. The old connection is read as usual, its text frames going to ``on_text``, until a first
   whole frame of any kind has arrived on the new one (on Binance's combined stream its first
   data frame, on Bybit the subscription ack): a ``selectors`` wait on both raw sockets, plus
   what it cannot see (part of a frame websocket-client has read already, TLS data decrypted
   but not yet read: ``SSLSocket.pending()``). That frame is held back. This phase ends after
   ``handover_timeout_s`` (10 s) at most.
3. What the old connection has already received is read without waiting for more (at most
   ``DRAIN_MAX_S``) and delivered, the old connection is closed with a close frame, then the
   held frame is delivered and reading goes on with the new connection (``WS_HANDOVER``).

Nothing is lost, but **the frames of the overlap reach ``on_text`` twice**, first from the old
connection, then again from the new one: the consumer de-duplicates (``LiveSource`` drops
trades by trade id and quotes by sequence). ``state`` stays ``open`` throughout (``on_state``
is not called), and a handover counts in ``connects``, ``reconnects`` and ``handovers``.

If the new connection cannot be opened or subscribed, is closed by the server, or shows no
frame within ``handover_timeout_s``, it is closed, ``WS_HANDOVER_FAILED: <reason>`` is logged
(counted in ``handover_failures``), the old connection is read on as before, and the handover
is tried again after ``backoff.next_delay()`` (at once on a new ``reconnect`` request). A
stream that sends nothing for ``handover_timeout_s`` cannot be handed over: its old connection
lives on until it fails. An old connection that dies meanwhile goes the way of any failure
(below); one that dies during the overlap is closed (``WS_DISCONNECTED``) and reading goes on
with the new connection at once.

**Failures.** A refused or timed-out connect, a dropped or reset connection, a protocol error,
a close frame from the server or silence: the state goes to ``backoff`` and the thread waits
``backoff.next_delay()`` before the next attempt. A connection is *healthy*, and the backoff is
reset, once it has delivered ``healthy_after_frames`` (10) text frames, or has stayed open
``healthy_after_s`` (30 s) having delivered at least one: a server that accepts and drops at
once keeps the delays growing, a stream that worked for a while comes back after ``first_s``.

**Log codes** (``actor=feed``, the connection's name in brackets at the end): ``WS_CONNECTED``,
``WS_CONNECT_FAILED: <reason>``, ``WS_DISCONNECTED: <reason>``, ``WS_RECONNECT_IN: <delay>s
(attempt N)``, ``WS_SILENT: no frame for X s``, ``WS_PLANNED_RECONNECT: <why>``,
``WS_HANDOVER: connect #N took over ...``, ``WS_HANDOVER_FAILED: <reason>; ...``,
``WS_ON_TEXT_FAILED``, ``WS_STOP_SLOW``. URLs are logged as scheme, user, host and port only (a
path may hold a listen key), the password masked (``state.secrets.mask_url``), as are URLs in
error texts.

**On stop** (``stop()``, any thread, idempotent; also from inside ``on_text``) every socket
(both during a handover) is shut down, which wakes a blocked read, ``selectors`` wait or
websocket handshake at once, a backoff wait ends, and the thread is joined for at most
``JOIN_TIMEOUT_S``. The waits ``stop`` cannot cut short are a DNS lookup, a TCP connect and a
TLS handshake in progress (websocket-client hands the socket out only after them): each is
bounded by ``open_timeout_s`` (DNS by the resolver), and the thread, a daemon, ends by itself
when it returns (``WS_STOP_SLOW`` is logged if the join times out).
"""

from __future__ import annotations

import contextlib
import math
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import websocket
from loguru import logger

from adapters.net.backoff import Backoff
from state.secrets import mask_url

STATES = ("connecting", "open", "backoff", "stopped")
JOIN_TIMEOUT_S = 2.0  # stop() waits at most this long for the thread
POLL_S = 0.25  # the longest a read blocks before the thread looks at its clocks again
STOP_SLICE_S = 0.05  # stop() re-aborts the sockets this often while it waits for the thread
HEALTHY_AFTER_FRAMES = 10  # text frames after which a connection counts as healthy ...
HEALTHY_AFTER_S = 30.0  # ... or seconds open (with at least one text frame)
HANDOVER_TIMEOUT_S = 10.0  # how long a new connection may take to show its first frame
DRAIN_MAX_S = 1.0  # the longest the old connection is drained at the end of a handover
ERRORS_LISTED = 10  # on_text failures logged with a traceback; after that ...
ERRORS_SUMMARY_EVERY = 1000  # ... one line every this many

# A frame as read: (opcode, payload, received_ns).
_Received = tuple[int, Any, int]


def _check_positive(name: str, value: float | None, *, optional: bool) -> None:
    if value is None and optional:
        return
    if (not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)
            or value <= 0):
        allowed = "a positive number of seconds" + (" or None" if optional else "")
        raise ValueError(f"{name}: must be {allowed}, got {value!r}")


def check_url(url: str) -> str:
    """``url`` itself if it is a ``ws://`` or ``wss://`` URL with a host, else ``ValueError``
    (whose text has the URL's credentials masked)."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        hostname = parts.hostname if parts is not None else None
    except ValueError:  # e.g. a bad port
        parts, hostname = None, None
    if parts is None or parts.scheme not in ("ws", "wss") or not hostname:
        raise ValueError(mask_url(f"url: must be a ws:// or wss:// URL with a host, got {url!r}"))
    return url


def redact_url(url: str) -> str:
    """Scheme, user, host and port only, the password masked: what may be logged of a URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<bad url>"
    return mask_url(f"{parts.scheme}://{parts.netloc}") if parts.netloc else "<bad url>"


def _describe(error: BaseException) -> str:
    """An error as ``Type: text`` for a log line, credentials of any URL in it masked."""
    text = mask_url(str(error).strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass
class _Run:
    """One ``start``: its thread and its stop flag (a thread that outlived ``stop`` only ever
    sees its own flag, so a later ``start`` cannot revive it)."""

    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


@dataclass(eq=False)
class _Link:
    """One open, subscribed websocket and what reading it keeps track of (the connection's
    thread only). Times are ``time.monotonic()``."""

    ws: websocket.WebSocket
    shown: str  # the URL as it may be logged
    number: int  # its ``connects`` count: "connect #N"
    subscriptions: int  # texts of subscribe() sent on it
    opened_at: float
    last_rx: float  # the last frame of any kind (the open, before the first)
    next_ping: float
    frames: int = 0  # text frames delivered from it
    healthy: bool = False
    timeout: float = -1.0  # the socket timeout set last


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why a connection could not be opened and subscribed. ``opened``: the handshake had
    succeeded; ``where``: the URL as it may be logged, for a failed connect; ``callback``:
    the caller's code failed (``url()`` or ``subscribe()``, logged as an error, ``error`` with
    its traceback)."""

    reason: str
    opened: bool = False
    where: str = ""
    callback: bool = False
    error: BaseException | None = None

    def describe(self) -> str:
        return f"{self.reason} ({self.where})" if self.where else self.reason


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
        handover_timeout_s: float = HANDOVER_TIMEOUT_S,
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
        _check_positive("handover_timeout_s", handover_timeout_s, optional=False)
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
        self._handover_timeout_s = float(handover_timeout_s)
        self._healthy_after_frames = healthy_after_frames
        self._healthy_after_s = float(healthy_after_s)
        self._log = logger.bind(actor="feed", conn=name)

        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._sockets: list[websocket.WebSocket] = []  # open or opening, for stop(): two in a handover
        self._reconnect_request: str | None = None
        # Counters: written by the connection's thread only, read by anyone through stats().
        self._state = "stopped"
        self._connected = False
        self._connects = 0
        self._reconnects = 0
        self._connect_failures = 0
        self._handovers = 0
        self._handover_failures = 0
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
        """Close the connection(s) and end the thread promptly; idempotent, from any thread
        (from the connection's own thread, e.g. inside ``on_text``, it does not wait for
        itself)."""
        with self._lock:
            run, sockets = self._run, list(self._sockets)
        if run is None:
            return
        run.stopping.set()
        for ws in sockets:
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
                sockets = list(self._sockets)
            for ws in sockets:
                _abort(ws)
        if thread.is_alive():
            self._log.warning("WS_STOP_SLOW: the thread did not end within {}s (in a TCP connect or DNS "
                              "lookup, bounded by open_timeout_s={}s) [{}]", JOIN_TIMEOUT_S,
                              self._open_timeout_s, self.name)

    def reconnect(self, reason: str = "requested") -> None:
        """Ask for a planned reconnect (a handover: no gap, no backoff delay) within ``POLL_S``;
        ignored unless a connection is open."""
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
        """A snapshot of the counters. ``connects``: connections opened (a handover's new one
        too); ``reconnects``: attempts after the first (after a failure, a drop, or a planned
        reconnect: each handover attempt); ``connect_failures``: attempts that never opened;
        ``handovers``: planned reconnects where a new connection took over,
        ``handover_failures``: those that failed, the old connection kept; ``frames``: text
        frames handed to ``on_text`` (the overlap of a handover counts twice); ``errors``:
        exceptions raised by the callbacks (``on_text``, ``subscribe``, ``ping_payload``,
        ``on_state``, a callable ``url``); ``last_frame_ns``: wall time of the last frame of any
        kind; ``backoff_attempt``: delays since the backoff's last reset."""
        return {
            "name": self.name,
            "url": self._url_shown,
            "state": self._state,
            "connected": self._connected,
            "connects": self._connects,
            "reconnects": self._reconnects,
            "connect_failures": self._connect_failures,
            "handovers": self._handovers,
            "handover_failures": self._handover_failures,
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
                    reason = self._attempt(run, reason)
                except Exception as error:  # noqa: BLE001 - a bug here must not end the feed
                    self._errors += 1
                    reason = f"unexpected: {_describe(error)}"
                    self._log.opt(exception=error).error("WS_DISCONNECTED: {} [{}]", reason, self.name)
                self._last_reason = reason
                if run.stopping.is_set():
                    break
                delay = self._backoff.next_delay()
                number = self._backoff.attempts
                self._set_state(run, "backoff", reason=reason, delay=delay, attempt=number)
                self._log.info("WS_RECONNECT_IN: {:.2f}s (attempt {}) [{}]", delay, number, self.name)
                if run.stopping.wait(delay):
                    break
        finally:
            self._connected = False
            self._set_state(run, "stopped", reason="stopped", delay=None, attempt=self._backoff.attempts)

    def _attempt(self, run: _Run, previous: str | None) -> str:
        """One connection, and those that took over from it by handover, from connect to
        close: why it ended (never a planned reconnect: those are handovers in here)."""
        self._set_state(run, "connecting", reason=previous, delay=None, attempt=self._backoff.attempts)
        opened = self._open(run)
        if run.stopping.is_set():
            if isinstance(opened, _Link):
                self._retire(opened.ws, graceful=True)
            return "stopped"
        if isinstance(opened, _Failure):
            self._report_failed_connect(opened)
            return opened.reason
        link = opened
        self._connected = True
        self._url_shown = link.shown
        self._log.info("WS_CONNECTED: {} ({} subscription message(s), connect #{}) [{}]", link.shown,
                       link.subscriptions, link.number, self.name)
        self._set_state(run, "open", reason=None, delay=None, attempt=self._backoff.attempts)
        graceful = False
        due_at, due_reason = self._end_of_life(link)
        try:
            while True:
                reason, planned = self._read(run, link, due_at, due_reason)
                if run.stopping.is_set():
                    graceful = True
                    return "stopped"
                if not planned:
                    self._log.warning("WS_DISCONNECTED: {} [{}]", reason, self.name)
                    return reason
                self._log.info("WS_PLANNED_RECONNECT: {} [{}]", reason, self.name)
                self._last_reason = reason
                link, retry_in = self._handover(run, link, reason)
                if run.stopping.is_set():
                    graceful = True
                    return "stopped"
                if retry_in is None:
                    due_at, due_reason = self._end_of_life(link)
                else:
                    due_at, due_reason = time.monotonic() + retry_in, reason
        finally:
            self._connected = False
            self._retire(link.ws, graceful)

    def _end_of_life(self, link: _Link) -> tuple[float, str]:
        if self._max_lifetime_s is None:
            return math.inf, ""
        return link.opened_at + self._max_lifetime_s, f"max lifetime {self._max_lifetime_s:g}s reached"

    def _open(self, run: _Run) -> _Link | _Failure:
        """Open a connection and send it the texts of ``subscribe()``: the new link (its socket
        in ``_sockets``), or why not (nothing left open)."""
        try:
            url = check_url(self._url()) if callable(self._url) else self._url
        except Exception as error:  # noqa: BLE001 - a callable url is the caller's code
            self._errors += 1
            return _Failure(f"url() failed: {_describe(error)}", callback=True)
        shown = redact_url(url)
        ws = websocket.WebSocket(skip_utf8_validation=True)  # text is decoded (and checked) in C below
        with self._lock:
            if run.stopping.is_set():
                return _Failure("stopped")
            self._sockets.append(ws)
        try:
            ws.connect(url, timeout=self._open_timeout_s)
        except Exception as error:  # noqa: BLE001 - refused, timed out, bad status, bad host ...
            self._retire(ws, graceful=False)
            return _Failure(f"connect failed: {_describe(error)}", where=shown)
        now = time.monotonic()
        self._connects += 1
        number = self._connects
        with self._lock:
            self._reconnect_request = None  # this connection subscribes afresh anyway
        try:
            texts = list(self._subscribe())
        except Exception as error:  # noqa: BLE001 - the caller's code
            self._errors += 1
            self._retire(ws, graceful=False)
            return _Failure(f"subscribe() failed: {_describe(error)}", opened=True, callback=True, error=error)
        try:
            for text in texts:
                ws.send(text)
        except Exception as error:  # noqa: BLE001 - the connection went away meanwhile
            self._retire(ws, graceful=False)
            return _Failure(f"subscribe send failed: {_describe(error)}", opened=True)
        interval = self._ping_interval_s
        return _Link(ws=ws, shown=shown, number=number, subscriptions=len(texts), opened_at=now, last_rx=now,
                     next_ping=now + interval if interval is not None else math.inf)

    def _report_failed_connect(self, failure: _Failure) -> None:
        if not failure.opened:
            self._connect_failures += 1
        code = "WS_DISCONNECTED" if failure.opened else "WS_CONNECT_FAILED"
        if failure.error is not None:
            self._log.opt(exception=failure.error).error("{}: {} [{}]", code, failure.describe(), self.name)
        elif failure.callback:
            self._log.error("{}: {} [{}]", code, failure.describe(), self.name)
        else:
            self._log.warning("{}: {} [{}]", code, failure.describe(), self.name)

    def _retire(self, ws: websocket.WebSocket, graceful: bool) -> None:
        """Forget ``ws`` (``stop`` no longer aborts it) and close it."""
        with self._lock:
            if ws in self._sockets:
                self._sockets.remove(ws)
        _close(ws, graceful)

    def _read(self, run: _Run, link: _Link, due_at: float, due_reason: str) -> tuple[str, bool]:
        """Read ``link`` until it ends or a planned reconnect is due (``due_at``, or a
        ``reconnect`` request): ``(why, planned)``."""
        stopping = run.stopping
        ws = link.ws
        interval = self._ping_interval_s
        silence = self._silence_timeout_s
        while True:
            if stopping.is_set():
                return "stopped", True
            if self._reconnect_request is not None:
                with self._lock:
                    request, self._reconnect_request = self._reconnect_request, None
                if request is not None:
                    return f"reconnect requested: {request}", True
            now = time.monotonic()
            if now >= due_at:
                return due_reason, True
            if silence is not None and now - link.last_rx >= silence:
                self._log.warning("WS_SILENT: no frame for {:.1f}s (limit {:g}s) [{}]", now - link.last_rx,
                                  silence, self.name)
                return f"silent for {now - link.last_rx:.1f}s", False
            if not link.healthy:
                self._check_health(link, now)  # before every read, so before a drop can be seen
            try:
                if now >= link.next_ping:
                    link.next_ping = now + interval  # type: ignore[operator]  # finite only with an interval
                    self._send_pings(ws)
                wait = min(POLL_S, link.next_ping - now, due_at - now,
                           link.last_rx + silence - now if silence is not None else math.inf)
                received = self._receive(link, wait)
            except Exception as error:  # noqa: BLE001 - closed, reset, protocol error: all mean reconnect
                return ("stopped", True) if stopping.is_set() else (f"connection lost: {_describe(error)}", False)
            if received is not None:
                ended = self._handle(link, received)
                if ended is not None:
                    return ended, False

    def _check_health(self, link: _Link, now: float) -> None:
        if link.frames and (link.frames >= self._healthy_after_frames
                            or now - link.opened_at >= self._healthy_after_s):
            link.healthy = True
            self._backoff.reset()

    def _receive(self, link: _Link, wait: float) -> _Received | None:
        """The next frame of ``link`` within ``wait`` seconds, ``None`` if none came; raises
        when the connection is lost."""
        wait = max(wait, 0.001)
        if abs(wait - link.timeout) > 0.005:
            link.ws.settimeout(wait)
            link.timeout = wait
        try:
            opcode, data = link.ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            return None
        return opcode, data, time.time_ns()

    def _handle(self, link: _Link, received: _Received) -> str | None:
        """Count and deliver one frame of ``link``; a close frame gives why the connection ended."""
        opcode, data, received_ns = received
        link.last_rx = time.monotonic()
        self._last_frame_ns = received_ns
        if opcode == websocket.ABNF.OPCODE_TEXT:
            try:
                text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
            except UnicodeDecodeError as error:
                self._errors += 1
                self._log.warning("WS_BAD_FRAME: text frame is not UTF-8 ({}) [{}]", error, self.name)
                return None
            self._frames += 1
            link.frames += 1
            self._deliver(text, received_ns)
            # Time spent in on_text (a sink applying back-pressure) is not silence.
            link.last_rx = time.monotonic()
        elif opcode == websocket.ABNF.OPCODE_PING:
            self._pings_received += 1  # websocket-client has sent the pong already
        elif opcode == websocket.ABNF.OPCODE_PONG:
            self._pongs_received += 1
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            return f"closed by the server ({_close_reason(data)})"
        else:
            self._binary_ignored += 1
            if self._binary_ignored == 1:
                self._log.warning("WS_BINARY_IGNORED: binary frames are not handled [{}]", self.name)
        return None

    # --- handover (make-before-break) -----------------------------------------------------------

    def _handover(self, run: _Run, old: _Link, why: str) -> tuple[_Link, float | None]:
        """Replace ``old`` by a new connection without a gap (module docstring, "Planned
        reconnects"). Returns the link to read on, and ``None`` once the new one took over, or
        the delay before the next try when it failed (``old`` kept, still open)."""
        self._reconnects += 1
        opened = self._open(run)
        if run.stopping.is_set():
            if isinstance(opened, _Link):
                self._retire(opened.ws, graceful=True)
            return old, None
        if isinstance(opened, _Failure):
            if not opened.opened:
                self._connect_failures += 1
            return old, self._handover_failed(opened.describe(), opened)
        new = opened
        started = time.monotonic()
        try:
            outcome, detail, first = self._overlap(run, old, new)
        except BaseException:
            self._retire(new.ws, graceful=False)  # a bug: the caller ends old, nothing may stay open
            raise
        if outcome == "stopped":
            self._retire(new.ws, graceful=True)
            return old, None
        if outcome == "new failed":
            self._retire(new.ws, graceful=True)
            return old, self._handover_failed(detail, None)
        if outcome == "old lost":
            self._log.warning("WS_DISCONNECTED: {} (the old connection, during a handover: connect #{} goes on) [{}]",
                              detail, new.number, self.name)
            self._retire(old.ws, graceful=False)
            drained = 0
        else:
            drained, ended = self._drain(run, old)
            self._retire(old.ws, graceful=ended is None)
            if run.stopping.is_set():
                return new, None
        self._handovers += 1
        self._url_shown = new.shown
        self._log.info("WS_HANDOVER: connect #{} took over after {:.3f}s of overlap; {} frame(s) drained from "
                       "the old connection ({}, {} subscription message(s)) [{}]", new.number,
                       time.monotonic() - started, drained, new.shown, new.subscriptions, self.name)
        if first is not None:
            ended = self._handle(new, first)  # never a close frame: _overlap does not hand one out
            assert ended is None
        return new, None

    def _handover_failed(self, reason: str, failure: _Failure | None) -> float:
        """Log and count a failed handover; the delay before the next try."""
        self._handover_failures += 1
        delay = self._backoff.next_delay()
        message = "WS_HANDOVER_FAILED: {}; keeping the old connection, next try in {:.2f}s [{}]"
        if failure is not None and failure.error is not None:
            self._log.opt(exception=failure.error).error(message, reason, delay, self.name)
        elif failure is not None and failure.callback:
            self._log.error(message, reason, delay, self.name)
        else:
            self._log.warning(message, reason, delay, self.name)
        return delay

    def _overlap(self, run: _Run, old: _Link, new: _Link) -> tuple[str, str, _Received | None]:
        """Read ``old`` (delivering its frames) until a first whole frame has arrived on
        ``new``, at most ``handover_timeout_s``. Returns ``(outcome, detail, first)``:
        ``("live", "", first frame of new)``, ``("new failed", why, None)``, ``("old lost",
        why, None)`` or ``("stopped", "", None)``."""
        stopping = run.stopping
        deadline = time.monotonic() + self._handover_timeout_s
        with selectors.DefaultSelector() as selector:  # no fd limit, unlike select.select
            selector.register(old.ws.sock, selectors.EVENT_READ, old)
            selector.register(new.ws.sock, selectors.EVENT_READ, new)
            while True:
                if stopping.is_set():
                    return "stopped", "", None
                now = time.monotonic()
                if now >= deadline:
                    return "new failed", f"no frame on the new connection within {self._handover_timeout_s:g}s", None
                wait = min(POLL_S, deadline - now)
                if _buffered(new.ws):
                    ready: list[_Link] = [new]
                elif _buffered(old.ws):
                    ready = [old]
                else:
                    ready = [key.data for key, _ in selector.select(wait)]  # stop() makes both readable
                if new in ready:
                    try:
                        first = self._receive(new, wait)
                    except Exception as error:  # noqa: BLE001 - closed, reset, protocol error
                        if stopping.is_set():
                            return "stopped", "", None
                        return "new failed", f"new connection lost: {_describe(error)}", None
                    if first is None:
                        continue  # part of a frame: the rest is on its way (or the deadline comes)
                    if first[0] == websocket.ABNF.OPCODE_CLOSE:
                        return "new failed", f"new connection closed by the server ({_close_reason(first[1])})", None
                    return "live", "", first
                if old in ready:
                    try:
                        received = self._receive(old, wait)
                    except Exception as error:  # noqa: BLE001 - closed, reset, protocol error
                        if stopping.is_set():
                            return "stopped", "", None
                        return "old lost", f"connection lost: {_describe(error)}", None
                    if received is not None:
                        ended = self._handle(old, received)
                        if ended is not None:
                            return "old lost", ended, None

    def _drain(self, run: _Run, old: _Link) -> tuple[int, str | None]:
        """Deliver the frames ``old`` has already received, without waiting for more (at most
        ``DRAIN_MAX_S``): ``(frames delivered, why old ended, or None)``."""
        deadline = time.monotonic() + DRAIN_MAX_S
        before = old.frames
        with selectors.DefaultSelector() as selector:
            selector.register(old.ws.sock, selectors.EVENT_READ)
            while not run.stopping.is_set():
                now = time.monotonic()
                if now >= deadline:
                    self._log.warning("WS_HANDOVER: the old connection still had frames after {:g}s of draining "
                                      "[{}]", DRAIN_MAX_S, self.name)
                    break
                if not _buffered(old.ws) and not selector.select(0):
                    break  # nothing more received: drained
                try:
                    received = self._receive(old, min(POLL_S, deadline - now))
                except Exception as error:  # noqa: BLE001 - it went away: what it had is delivered
                    return old.frames - before, f"connection lost: {_describe(error)}"
                if received is not None:
                    ended = self._handle(old, received)
                    if ended is not None:
                        return old.frames - before, ended
        return old.frames - before, None

    # --- helpers --------------------------------------------------------------------------------

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


def _buffered(ws: websocket.WebSocket) -> bool:
    """Whether ``ws`` holds received bytes that ``select`` on its socket cannot see: part of a
    frame websocket-client has read already (its ``frame_buffer``, kept across a read timeout),
    or TLS data decrypted but not yet read (``SSLSocket.pending()``)."""
    frames = getattr(ws, "frame_buffer", None)
    if frames is not None and (frames.recv_buffer or frames.header is not None):
        return True
    sock = ws.sock
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


def _abort(ws: websocket.WebSocket) -> None:
    """Wake the connection's thread out of a read, a select or a handshake (any thread)."""
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
