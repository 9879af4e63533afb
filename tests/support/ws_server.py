"""A local websocket server for tests, on the standard library alone (RFC 6455: the opening
handshake, and text, binary, continuation, ping, pong and close frames).

``ReplayServer`` listens on 127.0.0.1 (a random free port) with one accept thread, one reader
thread per client and one replay thread, all daemons, and is driven from the test::

    with ReplayServer(frames, pace_s=0.01) as server:          # start() ... stop()
        connection = WsConnection("t", server.url, on_text=...)
        server.wait_for_connections(1, timeout=5)
        server.drop_clients()                                  # mid-stream, no close frame
        server.pause(); server.resume()                        # connected but mute, then not
        server.push('{"e":"trade"}')                           # one frame to every client now
        server.received                                        # what the clients sent

**Replay.** The ``frames`` (extend them with ``extend``) form one stream with one cursor: while
a client is connected and the server is not paused, the next frame goes to every connected
client and the cursor moves on once at least one of them was sent it, then the server waits
``pace_s``. A client that connects after a drop therefore continues where the previous one
stopped (nothing is repeated, nothing skipped), like a live exchange stream rather than a
recording restarted per client. ``sent`` is the cursor.

**Live** (``live=True``): once a first client has connected, the stream goes on at ``pace_s``
whether or not a client is connected at the moment, as an exchange's does: a frame sent while
no client was connected is lost to all of them (``missed`` counts those). That is what makes a
reconnect's gap visible to a test. ``peak_clients`` is the most connections open at once (two
while a client hands a stream over from an old connection to a new one).

**Pause** makes the server mute: no replayed frame and no pong goes out until ``resume`` (the
connection stays open; the clients' pings are still recorded). That is a connection that is open
but dead, which only a silence watchdog can notice. ``push``, ``ping_clients`` and
``close_clients`` are explicit test actions and are sent even while paused.

**Drops.** ``drop_clients()`` ends every connection without a close frame: the server's side
sends a TCP FIN after whatever it had already sent (so no sent frame is lost), discards anything
the client still sends and closes once the client has closed or after a second.
``drop_clients(reset=True)`` closes with a TCP RST instead (SO_LINGER 0), which may discard data
still in flight. ``close_clients(code)`` is the polite variant: a close frame, as Binance sends
at 24 h.

Nothing here waits without a bound: threads wake at least every 0.5 s to look at the stop flag,
``stop`` shuts every socket down (waking blocked reads at once) and joins each thread for at
most two seconds, and every ``wait_*`` takes a timeout and returns ``False`` when it passes.
The ``websockets`` package would have done the protocol too, but it answers pings by itself
(a mute-but-open connection could not be staged) and would put an asyncio loop beside threads;
this server is threads and sockets like the code under test, with every byte under the test's
control.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
HANDSHAKE_TIMEOUT_S = 5.0  # a client that never finishes its request is dropped after this
SOCKET_POLL_S = 0.5  # the longest a server thread blocks before looking at its flags again
ACCEPT_POLL_S = 0.1  # the accept thread's look at the stop flag
DRAIN_S = 1.0  # after a FIN drop, how long the server waits for the client to close
JOIN_TIMEOUT_S = 2.0
MAX_HEADER_BYTES = 65536


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One server frame (servers never mask)."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", first, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 126, size)
    else:
        head = struct.pack("!BBQ", first, 127, size)
    return head + payload


def unmask(payload: bytes, mask: bytes) -> bytes:
    size = len(payload)
    if not size:
        return payload
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


class _Closed(Exception):
    """The client's connection ended (EOF, error, or the server dropped it)."""


class _Client:
    """One accepted connection: its socket, a send lock (frames never interleave), and how
    the server wants it to end."""

    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock = sock
        self.number = number
        self.path = ""
        self.send_lock = threading.Lock()
        self.ending: str | None = None  # None, "fin", "reset" or "stop"
        self._buffer = bytearray()

    def send(self, opcode: int, payload: bytes) -> bool:
        """Send one frame; ``False`` if the connection is ending or the send failed."""
        with self.send_lock:
            if self.ending is not None:
                return False
            try:
                self.sock.sendall(encode_frame(opcode, payload))
            except OSError:
                return False
            return True

    def end(self, how: str) -> None:
        """Stop sending and wake the reader, which then closes the socket as ``how`` says."""
        with self.send_lock:  # never in the middle of a frame
            if self.ending is not None:
                return
            self.ending = how
            with contextlib.suppress(OSError):
                # FIN after what was sent; a reset or a stop only needs the reader awake.
                self.sock.shutdown(socket.SHUT_WR if how == "fin" else socket.SHUT_RDWR)

    def read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if self.ending is not None:
                raise _Closed()
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as error:
                raise _Closed() from error
            if not chunk:
                raise _Closed()
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self.read_exact(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self.read_exact(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self.read_exact(8))
        mask = self.read_exact(4) if second & 0x80 else b""
        payload = self.read_exact(size) if size else b""
        return bool(first & 0x80), first & 0x0F, unmask(payload, mask) if mask else payload

    def handshake(self, register: Callable[[_Client], bool]) -> bool:
        """Read the HTTP upgrade request and answer 101 (or 400); ``True`` when upgraded.
        ``register`` is called just before the 101 goes out, under the send lock (so nothing
        can be sent before it): once the client sees its connection open, the server counts
        it and ``push`` reaches it."""
        sock = self.sock
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk or len(data) > MAX_HEADER_BYTES:
                    return False
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            request = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if colon:
                    headers[name.strip().lower()] = value.strip()
            key = headers.get("sec-websocket-key", "")
            if len(request) != 3 or request[0] != "GET" or "websocket" not in headers.get("upgrade", "").lower() \
                    or not key:
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return False
            self.path = request[1]
            self._buffer += rest
            with self.send_lock:
                if not register(self):
                    return False
                sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode("ascii"))
        except OSError:
            return False
        sock.settimeout(SOCKET_POLL_S)
        return True

    def close(self) -> None:
        if self.ending == "reset":
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.sock.close()


class ReplayServer:
    """A controllable local websocket server; see the module docstring."""

    def __init__(self, frames: Iterable[str] | None = None, *, pace_s: float = 0.0, host: str = "127.0.0.1",
                 live: bool = False) -> None:
        if pace_s < 0:
            raise ValueError(f"pace_s: must not be negative, got {pace_s!r}")
        self.pace_s = pace_s
        self.live = live
        self._host = host
        self._frames: list[str] = list(frames) if frames is not None else []
        self._cursor = 0
        self._changed = threading.Condition(threading.RLock())  # guards everything below
        self._gate = threading.Lock()  # held while an automatic frame (replay, pong) goes out
        self._paused = False
        self._clients: list[_Client] = []  # upgraded and not dropped: what frames go to
        self._accepted: list[_Client] = []  # every socket not yet closed, for stop()
        self._connections = 0
        self._peak_clients = 0
        self._missed = 0
        self._received: list[str] = []
        self._pings: list[bytes] = []
        self._pongs: list[bytes] = []
        self._paths: list[str] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._threads: list[threading.Thread] = []

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> ReplayServer:
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((self._host, 0))
        listener.listen(16)
        listener.settimeout(ACCEPT_POLL_S)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._spawn(self._accept_loop, "ws-server-accept")
        self._spawn(self._replay_loop, "ws-server-replay")
        return self

    def stop(self) -> None:
        """Close everything and join the threads (each for at most two seconds); idempotent."""
        self._stopping.set()
        with self._changed:
            clients = list(self._accepted)  # also those still in their handshake, or draining
            self._changed.notify_all()
        for client in clients:
            client.end("stop")
        listener = self._listener
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept (Linux)
            with contextlib.suppress(OSError):
                listener.close()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(JOIN_TIMEOUT_S)

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/`` (any path is accepted and recorded in ``paths``)."""
        return f"ws://{self._host}:{self.port}/"

    # --- what the test does -----------------------------------------------------------------------

    def push(self, text: str) -> int:
        """Send one text frame to every connected client now (even while paused); returns how
        many clients it reached."""
        return sum(client.send(OP_TEXT, text.encode("utf-8")) for client in self._live())

    def push_binary(self, data: bytes) -> int:
        return sum(client.send(OP_BINARY, data) for client in self._live())

    def ping_clients(self, payload: bytes = b"") -> int:
        """Send a websocket ping to every client (as Binance does); their pongs land in ``pongs``."""
        return sum(client.send(OP_PING, payload) for client in self._live())

    def close_clients(self, code: int = 1000, reason: str = "") -> int:
        """Send every client a close frame (a polite close; the client then closes)."""
        payload = struct.pack("!H", code) + reason.encode("utf-8")
        return sum(client.send(OP_CLOSE, payload) for client in self._live())

    def drop_clients(self, *, reset: bool = False) -> int:
        """End every connection abruptly, without a close frame: a TCP FIN after what was
        already sent, or with ``reset`` a TCP RST. Returns how many were dropped."""
        with self._changed:
            clients, self._clients = self._clients, []
            self._changed.notify_all()
        for client in clients:
            client.end("reset" if reset else "fin")
        return len(clients)

    def pause(self) -> None:
        """Stay connected but send nothing (no replayed frame, no pong) until ``resume``.
        When this returns, no automatic frame is in flight."""
        with self._gate:
            self._paused = True

    def resume(self) -> None:
        with self._gate, self._changed:
            self._paused = False
            self._changed.notify_all()

    def extend(self, frames: Iterable[str]) -> None:
        """Append frames to the replay stream."""
        with self._changed:
            self._frames.extend(frames)
            self._changed.notify_all()

    # --- what the test looks at -------------------------------------------------------------------

    @property
    def received(self) -> list[str]:
        """The text messages the clients sent, in arrival order (all clients)."""
        with self._changed:
            return list(self._received)

    @property
    def pings(self) -> list[bytes]:
        """Payloads of the pings the clients sent."""
        with self._changed:
            return list(self._pings)

    @property
    def pongs(self) -> list[bytes]:
        """Payloads of the pongs the clients sent (answers to ``ping_clients``)."""
        with self._changed:
            return list(self._pongs)

    @property
    def paths(self) -> list[str]:
        """The request path of every connection, in order."""
        with self._changed:
            return list(self._paths)

    @property
    def connections(self) -> int:
        """Connections accepted (upgraded) since start, open or not."""
        with self._changed:
            return self._connections

    @property
    def clients(self) -> int:
        """Connections open now."""
        with self._changed:
            return len(self._clients)

    @property
    def peak_clients(self) -> int:
        """The most connections open at the same time since start."""
        with self._changed:
            return self._peak_clients

    @property
    def missed(self) -> int:
        """With ``live``: replayed frames that went out while no client was connected."""
        with self._changed:
            return self._missed

    @property
    def sent(self) -> int:
        """Replayed frames sent so far (the replay cursor)."""
        with self._changed:
            return self._cursor

    @property
    def paused(self) -> bool:
        return self._paused

    def wait_until(self, predicate: Callable[[ReplayServer], bool], timeout: float) -> bool:
        """Wait until ``predicate(server)`` holds (re-checked at every change); ``False`` after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, SOCKET_POLL_S))
            return True

    def wait_for_connections(self, count: int, timeout: float) -> bool:
        return self.wait_until(lambda server: server._connections >= count, timeout)

    def wait_for_received(self, count: int, timeout: float) -> bool:
        return self.wait_until(lambda server: len(server._received) >= count, timeout)

    def wait_for_sent(self, count: int, timeout: float) -> bool:
        return self.wait_until(lambda server: server._cursor >= count, timeout)

    # --- threads ----------------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _live(self) -> list[_Client]:
        with self._changed:
            return list(self._clients)

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        number = 0
        while not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            number += 1
            client = _Client(sock, number)
            with self._changed:
                self._accepted.append(client)
            if self._stopping.is_set():
                client.end("stop")
            self._spawn(self._serve, f"ws-server-client-{number}", client)

    def _serve(self, client: _Client) -> None:
        try:
            if self._stopping.is_set() or not client.handshake(self._register):
                return
            self._read_frames(client)
        finally:
            with self._changed:
                if client in self._clients:
                    self._clients.remove(client)
                self._changed.notify_all()
            if client.ending == "fin":
                self._drain(client)
            client.close()
            with self._changed:
                self._accepted.remove(client)

    def _register(self, client: _Client) -> bool:
        with self._changed:
            if self._stopping.is_set():
                return False
            self._clients.append(client)
            self._connections += 1
            self._peak_clients = max(self._peak_clients, len(self._clients))
            self._paths.append(client.path)
            self._changed.notify_all()
            return True

    def _read_frames(self, client: _Client) -> None:
        message: list[bytes] = []
        message_opcode = OP_TEXT
        try:
            while not self._stopping.is_set():
                fin, opcode, payload = client.read_frame()
                if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                    if opcode != OP_CONT:
                        message, message_opcode = [], opcode
                    message.append(payload)
                    if fin and message_opcode == OP_TEXT:
                        with self._changed:
                            self._received.append(b"".join(message).decode("utf-8", "replace"))
                            self._changed.notify_all()
                elif opcode == OP_PING:
                    with self._changed:
                        self._pings.append(payload)
                        self._changed.notify_all()
                    with self._gate:
                        if not self._paused:
                            client.send(OP_PONG, payload)
                elif opcode == OP_PONG:
                    with self._changed:
                        self._pongs.append(payload)
                        self._changed.notify_all()
                elif opcode == OP_CLOSE:
                    client.send(OP_CLOSE, payload[:2])  # echo the code, as RFC 6455 asks
                    return
        except _Closed:
            return

    def _drain(self, client: _Client) -> None:
        """After a FIN drop: wait (bounded) for the client to close, discarding what it sends,
        so the close is clean (closing with unread data would turn it into a reset)."""
        deadline = time.monotonic() + DRAIN_S
        with contextlib.suppress(OSError):
            client.sock.settimeout(0.05)
            while time.monotonic() < deadline and not self._stopping.is_set():
                try:
                    if not client.sock.recv(65536):
                        return
                except TimeoutError:
                    continue

    def _replay_loop(self) -> None:
        while not self._stopping.is_set():
            with self._changed:
                while not self._stopping.is_set() and (
                        self._paused or self._cursor >= len(self._frames)
                        or not (self._clients or (self.live and self._connections))):
                    self._changed.wait(SOCKET_POLL_S)
                if self._stopping.is_set():
                    return
                index = self._cursor
                payload = self._frames[index].encode("utf-8")
                clients = list(self._clients)
            with self._gate:
                if self._paused:
                    continue
                delivered = sum(client.send(OP_TEXT, payload) for client in clients)
            if delivered or self.live:
                with self._changed:
                    if self._cursor == index:
                        self._cursor = index + 1
                        self._missed += 0 if delivered else 1
                    self._changed.notify_all()
                if self.pace_s:
                    self._stopping.wait(self.pace_s)
