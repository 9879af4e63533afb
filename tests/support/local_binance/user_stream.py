"""The user-data websocket: ``ws://127.0.0.1:<port>/ws/<listenKey>``, one server for every
listen key, built on ``tests/support/ws_server.ReplayServer`` (its handshake, frames, pings,
drops and bounded waits).

- A connection whose path is not ``/ws/<a listen key that is active>`` is refused at the
  handshake (the socket is closed without an answer), as is every connection while the test
  refuses them (``refuse_until``: a dropped stream the client cannot get back for a while).
- ``send(key, event)`` sends one event (a JSON object) to the connections of ``key``; what it
  does meanwhile is up to the test: ``hold()`` keeps events back until ``release(order)``
  (reordering: e.g. ``TRADE`` before ``NEW``), ``duplicate(n)`` sends each of the next ``n``
  events twice.
- ``pause()`` (from ``ReplayServer``) keeps the connections open but sends nothing, events
  and pongs alike (events meanwhile are lost to the client) until ``resume()``.
- ``events`` is every event sent, in order (with the listen key), for assertions.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.support.ws_server import OP_CLOSE, OP_TEXT, ReplayServer, _Client

PATH_PREFIX = "/ws/"


class UserStreamServer(ReplayServer):
    """See the module docstring. ``is_active(key)`` says whether a listen key may connect."""

    def __init__(self, is_active: Callable[[str], bool]) -> None:
        super().__init__(live=False)
        self._is_active = is_active
        self._refuse_until = 0.0  # time.monotonic() before which every handshake is refused
        self._held: list[tuple[str, str]] | None = None
        self._duplicate = 0
        self._sent: list[tuple[str, dict[str, Any]]] = []
        self._refused = 0
        self._send_lock = threading.Lock()  # one event at a time, so their order is kept

    # --- connections ---------------------------------------------------------------------------

    def _register(self, client: _Client) -> bool:
        key = listen_key_of(client.path)
        active = key is not None and self._is_active(key)
        with self._changed:
            refused = time.monotonic() < self._refuse_until or not active
            if refused:
                self._refused += 1
                self._changed.notify_all()
                return False
        return super()._register(client)

    def refuse_for(self, seconds: float) -> None:
        """Refuse new connections for ``seconds`` (0: accept again at once)."""
        with self._changed:
            self._refuse_until = time.monotonic() + seconds
            self._changed.notify_all()

    @property
    def refused(self) -> int:
        """Handshakes refused so far (unknown key, or while refusing)."""
        with self._changed:
            return self._refused

    def clients_of(self, key: str) -> int:
        return len(self._of(key))

    def _of(self, key: str) -> list[_Client]:
        return [client for client in self._live() if listen_key_of(client.path) == key]

    def close_key(self, key: str, code: int = 1000, reason: str = "") -> int:
        """A polite close (close frame) of every connection of ``key``."""
        payload = struct.pack("!H", code) + reason.encode("utf-8")
        return sum(client.send(OP_CLOSE, payload) for client in self._of(key))

    # --- events --------------------------------------------------------------------------------

    def send(self, key: str, event: dict[str, Any]) -> None:
        """Send ``event`` to the connections of ``key`` now, or hold it (see ``hold``)."""
        text = json.dumps(event, separators=(",", ":"))
        with self._send_lock:
            with self._changed:
                self._sent.append((key, event))
                self._changed.notify_all()
                if self._held is not None:
                    self._held.append((key, text))
                    return
                copies = 2 if self._duplicate > 0 else 1
                if self._duplicate > 0:
                    self._duplicate -= 1
            for _ in range(copies):
                self._deliver(key, text)

    def _deliver(self, key: str, text: str) -> int:
        if self.paused:  # open but mute (``pause``): the event is lost to the client
            return 0
        return sum(client.send(OP_TEXT, text.encode("utf-8")) for client in self._of(key))

    def hold(self) -> None:
        """Keep every event back (in order) until ``release``."""
        with self._changed:
            if self._held is None:
                self._held = []

    def held(self) -> list[dict[str, Any]]:
        with self._changed:
            return [json.loads(text) for _, text in self._held or []]

    def release(self, order: Sequence[int] | str | None = None) -> int:
        """Send the held events and stop holding: in the order held (``None``), reversed
        (``"reverse"``), or as the indexes of ``order`` say (``[1, 0, 2]``; indexes left out are
        dropped). Returns how many were sent."""
        with self._send_lock:
            with self._changed:
                held, self._held = self._held or [], None
            if order == "reverse":
                chosen = list(reversed(held))
            elif order is None:
                chosen = held
            else:
                chosen = [held[i] for i in order]  # type: ignore[union-attr]
            for key, text in chosen:
                self._deliver(key, text)
            return len(chosen)

    def duplicate(self, count: int) -> None:
        """Send each of the next ``count`` events twice."""
        with self._changed:
            self._duplicate = count

    @property
    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """Every event given to ``send`` (held ones too): ``(listen key, event)``."""
        with self._changed:
            return list(self._sent)


def listen_key_of(path: str) -> str | None:
    """``/ws/<key>`` -> ``<key>`` (a query string is ignored); anything else -> ``None``."""
    path = path.partition("?")[0]
    if not path.startswith(PATH_PREFIX):
        return None
    key = path[len(PATH_PREFIX):]
    return key or None
