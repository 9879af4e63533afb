"""The public market-data websocket the engine's Binance USD-M feed connects to, built on
``tests/support/ws_server.ReplayServer``.

The feed connects to ``combined_url(market_ws_url, ["btcusdt@trade", "btcusdt@bookTicker", ...])``
= ``<market_ws_url>/stream?streams=a/b/c`` and gets every frame in the combined envelope
``{"stream": "btcusdt@trade", "data": {...}}``; a raw connection to ``/ws/<stream>[/<stream>...]``
gets the bare event objects. A client receives only the streams it named. Frames are the real
USD-M shapes (``payloads/binance/futures/market_data_json``):

- ``trade``: ``{"e":"trade","E","T","s","t","p","q","X":"MARKET","m"}``
- ``aggTrade``: ``{"e":"aggTrade","E","a","s","p","q","f","l","T","m"}`` (one per trade: ``a``,
  ``f`` and ``l`` all carry the trade id)
- ``bookTicker``: ``{"e":"bookTicker","u","s","b","B","a","A","T","E"}``

Sending is synchronous on the caller's thread (``LocalBinance.feed_trade`` first matches, then
calls ``send_trade``): when it returns, the frame is in every subscribed client's socket.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

from tests.support.local_binance.shapes import plain
from tests.support.ws_server import OP_TEXT, ReplayServer


def streams_of(path: str) -> frozenset[str]:
    """The stream names a connection asked for: ``/stream?streams=a/b`` or ``/ws/a/b``."""
    parts = urlsplit(path)
    if parts.path.rstrip("/") == "/stream":
        names = "/".join(parse_qs(parts.query).get("streams", []))
    elif parts.path.startswith("/ws/"):
        names = parts.path[len("/ws/"):]
    else:
        return frozenset()
    return frozenset(name for name in names.split("/") if name)


def combined(path: str) -> bool:
    return urlsplit(path).path.rstrip("/") == "/stream"


class MarketStreamServer(ReplayServer):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__(live=False)
        self.frames_sent = 0
        self._trade_sent_ns: dict[tuple[str, int], int] = {}

    def send(self, stream: str, data: dict) -> int:
        """Send one event of ``stream`` (e.g. ``btcusdt@trade``) to the clients that asked for
        it; returns how many it reached."""
        raw = json.dumps(data, separators=(",", ":")).encode("utf-8")
        wrapped: bytes | None = None
        reached = 0
        for client in self._live():
            if stream not in streams_of(client.path):
                continue
            if combined(client.path):
                if wrapped is None:
                    wrapped = json.dumps({"stream": stream, "data": data}, separators=(",", ":")).encode("utf-8")
                reached += client.send(OP_TEXT, wrapped)
            else:
                reached += client.send(OP_TEXT, raw)
        with self._changed:
            self.frames_sent += 1
            self._changed.notify_all()
        return reached

    def subscribers(self, stream: str) -> int:
        return sum(stream in streams_of(client.path) for client in self._live())

    def send_trade(self, symbol: str, *, trade_id: int, price: Decimal, quantity: Decimal, ts_ms: int,
                   event_ms: int, buyer_maker: bool) -> int:
        """The ``trade`` and ``aggTrade`` frames of one trade (each to its subscribers)."""
        lower = symbol.lower()
        reached = 0
        with self._changed:
            self._trade_sent_ns[(symbol, trade_id)] = time.time_ns()
        if self._wanted(f"{lower}@trade"):
            reached += self.send(f"{lower}@trade", {
                "e": "trade", "E": event_ms, "T": ts_ms, "s": symbol, "t": trade_id, "p": plain(price),
                "q": plain(quantity), "X": "MARKET", "m": buyer_maker})
        if self._wanted(f"{lower}@aggTrade"):
            reached += self.send(f"{lower}@aggTrade", {
                "e": "aggTrade", "E": event_ms, "a": trade_id, "s": symbol, "p": plain(price), "q": plain(quantity),
                "f": trade_id, "l": trade_id, "T": ts_ms, "m": buyer_maker})
        return reached

    def trade_sent_ns(self, symbol: str, trade_id: int) -> int | None:
        """``time.time_ns()`` just before the frames of this trade went out (for latency:
        compare with ``RequestRecord.received_ns``)."""
        with self._changed:
            return self._trade_sent_ns.get((symbol, trade_id))

    def send_book_ticker(self, symbol: str, *, update_id: int, bid: Decimal, bid_qty: Decimal, ask: Decimal,
                         ask_qty: Decimal, ts_ms: int, event_ms: int) -> int:
        stream = f"{symbol.lower()}@bookTicker"
        return self.send(stream, {
            "e": "bookTicker", "u": update_id, "s": symbol, "b": plain(bid), "B": plain(bid_qty), "a": plain(ask),
            "A": plain(ask_qty), "T": ts_ms, "E": event_ms})

    def _wanted(self, stream: str) -> bool:
        return any(stream in streams_of(client.path) for client in self._live())

