"""Binance public market-data websocket frames -> ``ParsedFrame``; and the subscription side:
stream names, the combined-stream URL, the SUBSCRIBE message.

Pure: no threads, no network, no state between frames. One ``json`` decode per frame, then
dict lookups; the result is the only object built per frame (control results are shared
constants).

What a frame becomes:

- ``trade`` (``e,E,T,s,t,p,q,m``; USD-M adds ``X``) -> ``TradeEvent(price=p, qty=q, ts_ms=T,
  trade_id=str(t))``. A USD-M trade whose ``X`` is not ``MARKET`` (``INSURANCE_FUND``, ``ADL``,
  ``NA``) is not a market trade: control ``ignored:trade:<X>``.
- ``aggTrade`` (``a,p,q,f,l,T,m``) -> ``TradeEvent(trade_id="a<a>")``: the ``a`` prefix keeps
  aggregate ids apart from raw trade ids.
- ``bookTicker`` (``u,s,b,B,a,A`` and on USD-M ``T,E``; spot sends no ``e`` field) ->
  ``QuoteEvent`` with ``ts_ms`` from ``T``, else ``E``, else ``None``, and ``seq`` from the
  order book update id ``u`` (``None`` if absent; not a whole number >= 0: ``bad_value``).
- depth (diff and partial), klines and the other stream types we do not use -> control
  ``ignored:<type>`` (``ignored:depth``, ``ignored:kline``, ``ignored:markPrice``, ...).
- ``{"result": null, "id": n}`` -> control ``ack`` (a non-null result, e.g. LIST_SUBSCRIPTIONS:
  ``result``); ``serverShutdown`` -> control ``server_shutdown`` (reconnect soon).
- ``{"code": .., "msg": ..}`` or ``{"error": {..}}`` -> problem ``unexpected`` with the message.
- A frame about a symbol not in the parser's map -> problem ``unknown_stream``. Broken JSON,
  a frame cut short, a missing field, a bad price/quantity/timestamp -> ``malformed_json``,
  ``truncated``, ``missing_field``, ``bad_value`` (naming the field). Nothing raises.

Frames may come wrapped (``/stream?streams=...``: ``{"stream": "btcusdt@trade", "data": {..}}``)
or raw (``/ws/...``: the event object itself).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from adapters.feeds.frame_log import (
    FrameError,
    loads as _loads,
    coin_by_symbol,
    decode,
    default_symbols,
    missing,
    price,
    problem,
    quantity,
    sequence,
    timestamp_ms,
)
from adapters.feeds.stream_events import ParsedFrame, QuoteEvent, TradeEvent

__all__ = [
    "DEFAULT_URLS", "MARKETS", "SPOT_WS_URL", "USDM_WS_URL", "BinanceFrameParser",
    "combined_url", "default_symbols", "subscribe_message",
]

SPOT_WS_URL = "wss://stream.binance.com:9443"
USDM_WS_URL = "wss://fstream.binance.com"
DEFAULT_URLS = {"spot": SPOT_WS_URL, "usdm": USDM_WS_URL}
MARKETS = tuple(DEFAULT_URLS)
TRADE_STREAMS = ("trade", "aggTrade")
MAX_STREAMS = 1024  # per connection (Binance's limit)

_ACK = ParsedFrame(control="ack")
_RESULT = ParsedFrame(control="result")
_SHUTDOWN = ParsedFrame(control="server_shutdown")
_DEPTH = ParsedFrame(control="ignored:depth")

# Event types (the "e" field) of known streams we do not use -> their shared control result.
_IGNORED_EVENTS: dict[str, ParsedFrame] = {
    event: ParsedFrame(control=f"ignored:{name}")
    for event, name in {
        "depthUpdate": "depth",
        "kline": "kline",
        "continuous_kline": "continuousKline",
        "markPriceUpdate": "markPrice",
        "indexPriceUpdate": "indexPrice",
        "forceOrder": "forceOrder",
        "24hrTicker": "ticker",
        "24hrMiniTicker": "miniTicker",
        "1hTicker": "ticker_1h",
        "4hTicker": "ticker_4h",
        "1dTicker": "ticker_1d",
        "avgPrice": "avgPrice",
        "contractInfo": "contractInfo",
        "compositeIndex": "compositeIndex",
        "assetIndexUpdate": "assetIndex",
    }.items()
}
_IGNORED_EVENTS["depthUpdate"] = _DEPTH

# Stream-name types (after the "@") whose data carries no "e" field, or is a list.
_IGNORED_STREAMS: dict[str, ParsedFrame] = {
    "depth": _DEPTH,
    "markPrice": _IGNORED_EVENTS["markPriceUpdate"],
    "ticker": _IGNORED_EVENTS["24hrTicker"],
    "miniTicker": _IGNORED_EVENTS["24hrMiniTicker"],
    "forceOrder": _IGNORED_EVENTS["forceOrder"],
    "kline": _IGNORED_EVENTS["kline"],
    "assetIndex": _IGNORED_EVENTS["assetIndexUpdate"],
}


class BinanceFrameParser:
    """Parses one Binance websocket text frame at a time for the coins of ``symbols``
    (coin -> exchange symbol, e.g. ``{"BTC": "BTCUSDT"}``; see ``default_symbols``).

    ``market`` is ``"usdm"`` (USD-M futures, ``fstream``) or ``"spot"``; it picks the default
    endpoint. Stateless between frames, so one parser may serve reconnects unchanged.
    """

    def __init__(self, symbols: Mapping[str, str], *, market: str = "usdm") -> None:
        if market not in DEFAULT_URLS:
            raise ValueError(f"market: must be one of {', '.join(MARKETS)}, got {market!r}")
        self.market = market
        self._coins = coin_by_symbol(symbols)  # validates: non-empty text, no symbol twice
        self.symbols: dict[str, str] = {coin: symbol.upper() for coin, symbol in symbols.items()}
        self._handlers: dict[str, Callable[[dict[str, Any]], ParsedFrame]] = {
            "trade": self._trade,
            "aggTrade": self._agg_trade,
            "bookTicker": self._book_ticker,
        }

    @property
    def default_url(self) -> str:
        return DEFAULT_URLS[self.market]

    # --- subscription ------------------------------------------------------------------------

    def stream_names(self, coins: Iterable[str] | None = None, *, trades: str = "trade",
                     quotes: bool = True) -> list[str]:
        """``["btcusdt@trade", "btcusdt@bookTicker", ...]`` for ``coins`` (default: all of the
        parser's). ``trades`` is ``"trade"`` (every trade) or ``"aggTrade"`` (aggregated per
        taker order); ``quotes=False`` leaves out ``@bookTicker``."""
        if trades not in TRADE_STREAMS:
            raise ValueError(f"trades: must be one of {', '.join(TRADE_STREAMS)}, got {trades!r}")
        names: list[str] = []
        for coin in self.symbols if coins is None else coins:
            symbol = self.symbols.get(coin)
            if symbol is None:
                raise ValueError(f"coins: {coin!r} has no symbol (known: {', '.join(self.symbols)})")
            lower = symbol.lower()
            names.append(f"{lower}@{trades}")
            if quotes:
                names.append(f"{lower}@bookTicker")
        return names

    # --- parsing -----------------------------------------------------------------------------

    def parse(self, frame: str | bytes) -> ParsedFrame:
        """What one text frame means; never raises (a bad frame gives ``problem``)."""
        try:
            try:
                message = _loads(frame)
            except Exception:
                message = decode(frame)  # the slow way: says why it failed, or takes bytes
            if type(message) is dict:
                data = message.get("data")
                if type(data) is dict:  # the combined-stream envelope: nearly every frame
                    handler = self._handlers.get(data.get("e"))  # type: ignore[arg-type]
                    if handler is not None:
                        return handler(data)
                    return self._event(data, message.get("stream"))
                if data is not None:
                    return self._wrapped(message.get("stream"), data)
                if "e" in message:
                    return self._event(message, None)
                return self._other(message)
            raise FrameError("unexpected", f"a JSON {type(message).__name__}, not an object")
        except FrameError as err:
            return ParsedFrame(problem=problem(err.kind, err.detail, frame))
        except KeyError as err:
            err2 = missing(err)
            return ParsedFrame(problem=problem(err2.kind, err2.detail, frame))
        except Exception as err:  # a shape no rule foresaw: report it, never raise
            return ParsedFrame(problem=problem("unexpected", f"{type(err).__name__}: {err}", frame))

    __call__ = parse

    def _wrapped(self, stream: Any, data: Any) -> ParsedFrame:
        if type(data) is list and type(stream) is str:  # all-market array streams (!ticker@arr)
            ignored = _IGNORED_STREAMS.get(_stream_type(stream))
            if ignored is not None:
                return ignored
        raise FrameError("unexpected", f"stream {stream!r} carries a {type(data).__name__}")

    def _event(self, data: dict[str, Any], stream: Any) -> ParsedFrame:
        event = data.get("e")
        handler = self._handlers.get(event)  # type: ignore[arg-type]
        if handler is not None:
            return handler(data)
        if event is None:
            return self._untyped(data, stream)
        ignored = _IGNORED_EVENTS.get(event)
        if ignored is not None:
            self._coin(data.get("s"), ignore_absent=True)
            return ignored
        if event == "serverShutdown":
            return _SHUTDOWN
        raise FrameError("unexpected", f"unknown event type {event!r}")

    def _untyped(self, data: dict[str, Any], stream: Any) -> ParsedFrame:
        """Data without an ``e`` field: spot bookTicker and partial depth. The stream name says
        which; a raw (unwrapped) frame is recognized by its fields."""
        if type(stream) is str:
            if stream.endswith("@bookTicker"):  # spot's busiest stream: the short way
                return self._book_ticker(data)
            kind = _stream_type(stream)
            if kind == "bookTicker":
                return self._book_ticker(data)
            ignored = _IGNORED_STREAMS.get(kind)
            if ignored is not None:
                return ignored
            raise FrameError("unexpected", f"unknown stream {stream!r}")
        if "b" in data and "a" in data and "u" in data and "s" in data:
            return self._book_ticker(data)
        if "lastUpdateId" in data and "bids" in data:
            return _DEPTH
        raise FrameError("unexpected", f"unrecognized object with keys {sorted(data)[:8]}")

    def _other(self, message: dict[str, Any]) -> ParsedFrame:
        if "result" in message and "id" in message:
            return _ACK if message["result"] is None else _RESULT
        error = message.get("error")
        if type(error) is dict:
            message = error
        if "code" in message or "msg" in message:
            raise FrameError("unexpected", f"error {message.get('code')}: {message.get('msg')}")
        return self._untyped(message, None)

    def _coin(self, symbol: Any, *, ignore_absent: bool = False) -> str:
        coin = self._coins.get(symbol)  # type: ignore[arg-type]
        if coin is None and not (ignore_absent and symbol is None):
            raise FrameError("unknown_stream", f"symbol {symbol!r} is not subscribed")
        return coin  # type: ignore[return-value]

    def _trade(self, data: dict[str, Any]) -> ParsedFrame:
        coin = self._coins.get(data["s"]) or self._coin(data["s"])
        status = data.get("X")
        if status is not None and status != "MARKET":
            return ParsedFrame(control=f"ignored:trade:{status}")
        trade_id = data["t"]
        if type(trade_id) is not int:
            raise FrameError("bad_value", f"t: {trade_id!r} is not a trade id")
        return ParsedFrame(events=(TradeEvent(
            coin=coin,
            price=price(data["p"], "p"),
            qty=quantity(data["q"], "q"),
            ts_ms=timestamp_ms(data["T"], "T"),
            trade_id=str(trade_id),
        ),))

    def _agg_trade(self, data: dict[str, Any]) -> ParsedFrame:
        coin = self._coins.get(data["s"]) or self._coin(data["s"])
        trade_id = data["a"]
        if type(trade_id) is not int:
            raise FrameError("bad_value", f"a: {trade_id!r} is not an aggregate trade id")
        return ParsedFrame(events=(TradeEvent(
            coin=coin,
            price=price(data["p"], "p"),
            qty=quantity(data["q"], "q"),
            ts_ms=timestamp_ms(data["T"], "T"),
            trade_id=f"a{trade_id}",
        ),))

    def _book_ticker(self, data: dict[str, Any]) -> ParsedFrame:
        coin = self._coins.get(data["s"]) or self._coin(data["s"])
        ts = data.get("T")
        if ts is None:
            ts = data.get("E")
            field = "E"
        else:
            field = "T"
        seq = sequence(data.get("u"), "u", "an update id")
        return ParsedFrame(events=(QuoteEvent(
            coin=coin,
            bid=price(data["b"], "b"),
            bid_qty=quantity(data["B"], "B"),
            ask=price(data["a"], "a"),
            ask_qty=quantity(data["A"], "A"),
            ts_ms=None if ts is None else timestamp_ms(ts, field),
            seq=seq,
        ),))


def _stream_type(stream: str) -> str:
    """``"btcusdt@depth@100ms"`` -> ``"depth"``, ``"btcusdt@kline_1m"`` -> ``"kline"``,
    ``"!ticker@arr"`` -> ``"ticker"``, ``"btcusdt@depth5"`` -> ``"depth"``."""
    name = stream[1:] if stream.startswith("!") else stream.partition("@")[2]
    name = name.partition("@")[0].partition("_")[0]
    return name.rstrip("0123456789") or name


# --- subscription messages ---------------------------------------------------------------------

def combined_url(base_url: str, streams: Iterable[str]) -> str:
    """``<base>/stream?streams=a/b/c``: one connection for all ``streams`` (at most 1024)."""
    names = list(streams)
    if not names:
        raise ValueError("streams: at least one stream is needed")
    if len(names) > MAX_STREAMS:
        raise ValueError(f"streams: at most {MAX_STREAMS} per connection, got {len(names)}")
    return f"{base_url.rstrip('/')}/stream?streams={'/'.join(names)}"


def subscribe_message(streams: Iterable[str], id: int) -> str:  # noqa: A002 - Binance's name
    """The JSON text of ``{"method": "SUBSCRIBE", "params": [...], "id": id}``; Binance answers
    ``{"result": null, "id": id}`` (parsed as control ``ack``)."""
    if type(id) is not int or id < 0:
        raise ValueError(f"id: must be an unsigned integer, got {id!r}")
    return json.dumps({"method": "SUBSCRIBE", "params": list(streams), "id": id})
