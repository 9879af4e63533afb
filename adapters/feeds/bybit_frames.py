"""Bybit v5 public websocket frames -> ``ParsedFrame``; and the subscription side: topics, the
subscribe and ping messages.

One ``json`` decode per frame, then dict lookups. The only state is the last known top of book
per symbol and its sequence (see ``tickers`` below), owned by the parser and touched only by
``parse`` and ``reset``, so a parser belongs to one connection's thread.

What a frame becomes:

- ``publicTrade.<SYMBOL>`` (``data``: a list of ``{T, s, S, v, p, i, BT, ...}``) -> one
  ``TradeEvent(price=p, qty=v, ts_ms=T, trade_id=i)`` per element. Block trades (``BT: true``,
  negotiated off the book, like Binance's non-MARKET trades) are left out unless the parser is
  built with ``block_trades=True``; a frame of block trades only is control
  ``ignored:publicTrade:block``. One bad element rejects the whole frame.
- ``tickers.<SYMBOL>`` -> ``QuoteEvent`` from ``bid1Price``, ``bid1Size``, ``ask1Price``,
  ``ask1Size``, with ``ts_ms`` from the envelope's ``ts`` and ``seq`` from its cross sequence
  ``cs`` (``None`` if absent; not a whole number >= 0: ``bad_value``). A ``delta`` carries only the
  fields that changed, so the parser keeps the last known four values per symbol (a
  ``snapshot`` replaces them) and emits a quote whenever a frame changes any of them **and**
  all four are known; until then control ``ignored:tickers:incomplete``. A ticker frame that
  changes none of them (mark price, funding, ...) is control ``ignored:tickers``. Spot tickers
  carry no bid/ask at all, so on spot the tickers topic gives no quotes and ``topics()`` leaves
  it out. Call ``reset()`` after a reconnect (the new snapshot would replace the values anyway).
- A ticker frame whose ``cs`` is below that of the last one applied to its symbol's book is
  control ``ignored:tickers:stale`` and leaves the book alone: during a websocket handover two
  connections deliver the same frames, and a connection's deltas are relative to its own
  previous frames, so applying only frames at least as new as the book keeps the book right
  whichever connection each came from (a frame of the same ``cs`` sets the values they had
  then, which the book has already). One exception: an older ``snapshot`` still fills in the
  fields the book has not known since a ``reset()`` (it was taken after the reset, and every
  later change of those fields would have been applied).
- ``orderbook.*``, ``kline.*``, ``liquidation.*`` and the other topics we do not use ->
  control ``ignored:<topic kind>`` (``ignored:orderbook``, ``ignored:kline``, ...).
- ``{"success": true, "op": "subscribe", ...}`` -> control ``ack``; ``success: false`` ->
  problem ``unexpected`` naming ``ret_msg``; ``{"op": "pong"}`` (linear) or
  ``{"ret_msg": "pong", "op": "ping"}`` (spot) -> control ``pong``.
- A topic about a symbol not in the parser's map -> problem ``unknown_stream``; broken JSON,
  a frame cut short, a missing field, a bad price/quantity/timestamp -> ``malformed_json``,
  ``truncated``, ``missing_field``, ``bad_value``. Nothing raises.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
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
    "CATEGORIES", "DEFAULT_URLS", "LINEAR_WS_URL", "SPOT_WS_URL", "BybitFrameParser",
    "default_symbols", "ping_message", "subscribe_message",
]

LINEAR_WS_URL = "wss://stream.bybit.com/v5/public/linear"
SPOT_WS_URL = "wss://stream.bybit.com/v5/public/spot"
DEFAULT_URLS = {"linear": LINEAR_WS_URL, "spot": SPOT_WS_URL}
CATEGORIES = tuple(DEFAULT_URLS)
MAX_ARGS = 10  # topics per subscribe request (spot's limit; also used for linear)
PING_INTERVAL_S = 20  # Bybit recommends a ping every 20 seconds

_ACK = ParsedFrame(control="ack")
_PONG = ParsedFrame(control="pong")
_TICKERS_UNCHANGED = ParsedFrame(control="ignored:tickers")
_TICKERS_INCOMPLETE = ParsedFrame(control="ignored:tickers:incomplete")
_TICKERS_STALE = ParsedFrame(control="ignored:tickers:stale")
_BLOCK_ONLY = ParsedFrame(control="ignored:publicTrade:block")
_NO_TRADES = ParsedFrame(control="ignored:publicTrade:empty")

# Topic kinds we do not use -> (their control result, whether the topic ends in a symbol).
_IGNORED_TOPICS: dict[str, tuple[ParsedFrame, bool]] = {
    kind: (ParsedFrame(control=f"ignored:{kind}"), has_symbol)
    for kind, has_symbol in {
        "orderbook": True,
        "kline": True,
        "liquidation": True,
        "allLiquidation": True,
        "tickers_lt": True,
        "kline_lt": True,
        "lt": True,
        "insurance": False,
        "priceLimit": True,
        "adlAlert": False,
    }.items()
}

_QUOTE_FIELDS = ("bid1Price", "bid1Size", "ask1Price", "ask1Size")


class BybitFrameParser:
    """Parses one Bybit v5 public websocket text frame at a time for the coins of ``symbols``
    (coin -> exchange symbol, e.g. ``{"BTC": "BTCUSDT"}``; see ``default_symbols``).

    ``category`` is ``"linear"`` (USDT perpetuals) or ``"spot"``; it picks the default endpoint
    and which topics carry quotes. Keeps the last known top of book per symbol, so that
    ticker deltas (which carry only the changed fields) still give whole quotes.
    """

    def __init__(self, symbols: Mapping[str, str], *, category: str = "linear",
                 block_trades: bool = False) -> None:
        if category not in DEFAULT_URLS:
            raise ValueError(f"category: must be one of {', '.join(CATEGORIES)}, got {category!r}")
        self.category = category
        self.block_trades = block_trades
        self._coins = coin_by_symbol(symbols)  # validates: non-empty text, no symbol twice
        self.symbols: dict[str, str] = {coin: symbol.upper() for coin, symbol in symbols.items()}
        self._book: dict[str, list[Decimal | None]] = {}  # symbol -> [bid, bid_qty, ask, ask_qty]
        self._book_seq: dict[str, int] = {}  # symbol -> cs of the last frame applied to its book
        self._handlers: dict[str, Callable[[dict[str, Any], str], ParsedFrame]] = {
            "publicTrade": self._public_trade,
            "tickers": self._tickers,
        }

    @property
    def default_url(self) -> str:
        return DEFAULT_URLS[self.category]

    def reset(self) -> None:
        """Forget the last known top of book and its sequence (call on reconnect)."""
        self._book.clear()
        self._book_seq.clear()

    # --- subscription ------------------------------------------------------------------------

    def topics(self, coins: Iterable[str] | None = None, *, quotes: bool = True) -> list[str]:
        """``["publicTrade.BTCUSDT", "tickers.BTCUSDT", ...]`` for ``coins`` (default: all of
        the parser's). ``tickers`` only on linear (spot tickers have no bid/ask) and only with
        ``quotes``."""
        with_tickers = quotes and self.category == "linear"
        names: list[str] = []
        for coin in self.symbols if coins is None else coins:
            symbol = self.symbols.get(coin)
            if symbol is None:
                raise ValueError(f"coins: {coin!r} has no symbol (known: {', '.join(self.symbols)})")
            names.append(f"publicTrade.{symbol}")
            if with_tickers:
                names.append(f"tickers.{symbol}")
        return names

    def subscribe_messages(self, coins: Iterable[str] | None = None, *, quotes: bool = True,
                           req_id: str = "sub") -> list[str]:
        """The subscribe messages for ``topics(coins)``, ``MAX_ARGS`` topics each, with
        request ids ``<req_id>-1``, ``<req_id>-2``, ..."""
        names = self.topics(coins, quotes=quotes)
        return [subscribe_message(names[start:start + MAX_ARGS], f"{req_id}-{number}")
                for number, start in enumerate(range(0, len(names), MAX_ARGS), start=1)]

    # --- parsing -----------------------------------------------------------------------------

    def parse(self, frame: str | bytes) -> ParsedFrame:
        """What one text frame means; never raises (a bad frame gives ``problem``)."""
        try:
            try:
                message = _loads(frame)
            except Exception:
                message = decode(frame)  # the slow way: says why it failed, or takes bytes
            if type(message) is not dict:
                raise FrameError("unexpected", f"a JSON {type(message).__name__}, not an object")
            topic = message.get("topic")
            if topic is None:
                return self._control(message)
            if type(topic) is not str:
                raise FrameError("bad_value", f"topic: {topic!r} is not text")
            kind, _, rest = topic.partition(".")
            handler = self._handlers.get(kind)
            if handler is not None:
                return handler(message, rest)
            ignored = _IGNORED_TOPICS.get(kind)
            if ignored is None:
                raise FrameError("unexpected", f"unknown topic {topic!r}")
            result, has_symbol = ignored
            if has_symbol:
                self._coin(rest.rpartition(".")[2])
            return result
        except FrameError as err:
            return ParsedFrame(problem=problem(err.kind, err.detail, frame))
        except KeyError as err:
            err2 = missing(err)
            return ParsedFrame(problem=problem(err2.kind, err2.detail, frame))
        except Exception as err:  # a shape no rule foresaw: report it, never raise
            return ParsedFrame(problem=problem("unexpected", f"{type(err).__name__}: {err}", frame))

    __call__ = parse

    def _coin(self, symbol: str) -> str:
        coin = self._coins.get(symbol)
        if coin is None:
            raise FrameError("unknown_stream", f"symbol {symbol!r} is not subscribed")
        return coin

    def _control(self, message: dict[str, Any]) -> ParsedFrame:
        op = message.get("op")
        if op == "pong" or message.get("ret_msg") == "pong":
            return _PONG
        success = message.get("success")
        if success is True:
            return _ACK
        if success is False:
            reason = message.get("ret_msg") or message.get("retMsg") or "(no message)"
            raise FrameError("unexpected", f"{op or 'request'} failed: {reason}")
        if "retCode" in message:
            if message["retCode"] == 0:
                return _ACK
            raise FrameError("unexpected", f"{op or 'request'} failed: {message.get('retCode')} "
                                           f"{message.get('retMsg') or '(no message)'}")
        raise FrameError("unexpected", f"unrecognized message with keys {sorted(message)[:8]}")

    def _public_trade(self, message: dict[str, Any], symbol: str) -> ParsedFrame:
        coin = self._coins.get(symbol) or self._coin(symbol)
        data = message["data"]
        if type(data) is not list:
            raise FrameError("bad_value", f"data: a {type(data).__name__}, not a list of trades")
        events = []
        blocks = 0
        for trade in data:
            if trade.get("BT") is True and not self.block_trades:
                blocks += 1
                continue
            trade_id = trade["i"]
            if type(trade_id) is not str or not trade_id:
                if type(trade_id) is not int:
                    raise FrameError("bad_value", f"i: {trade_id!r} is not a trade id")
                trade_id = str(trade_id)
            events.append(TradeEvent(
                coin=coin,
                price=price(trade["p"], "p"),
                qty=quantity(trade["v"], "v"),
                ts_ms=timestamp_ms(trade["T"], "T"),
                trade_id=trade_id,
            ))
        if not events:
            return _BLOCK_ONLY if blocks else _NO_TRADES
        return ParsedFrame(events=tuple(events))

    def _tickers(self, message: dict[str, Any], symbol: str) -> ParsedFrame:
        coin = self._coins.get(symbol) or self._coin(symbol)
        data = message["data"]
        if type(data) is not dict:
            raise FrameError("bad_value", f"data: a {type(data).__name__}, not a ticker object")
        seq = sequence(message.get("cs"), "cs")
        bid = data.get("bid1Price")
        bid_qty = data.get("bid1Size")
        ask = data.get("ask1Price")
        ask_qty = data.get("ask1Size")
        snapshot = message.get("type") == "snapshot"
        last = self._book_seq.get(symbol)
        stale = seq is not None and last is not None and seq < last
        if bid is None and bid_qty is None and ask is None and ask_qty is None:
            if snapshot and not stale:
                self._book.pop(symbol, None)
            return _TICKERS_STALE if stale else _TICKERS_UNCHANGED
        # parse everything first, so a bad value leaves the known book as it was
        if bid is not None:
            bid = price(bid, "bid1Price")
        if bid_qty is not None:
            bid_qty = quantity(bid_qty, "bid1Size")
        if ask is not None:
            ask = price(ask, "ask1Price")
        if ask_qty is not None:
            ask_qty = quantity(ask_qty, "ask1Size")
        ts = message.get("ts")
        if ts is not None:
            ts = timestamp_ms(ts, "ts")
        book = self._book.get(symbol)
        if stale:
            if not snapshot or book is None or None not in book:
                return _TICKERS_STALE
            for index, value in enumerate((bid, bid_qty, ask, ask_qty)):  # see the module docstring
                if book[index] is None:
                    book[index] = value
            seq = last
        elif book is None or snapshot:
            book = self._book[symbol] = [bid, bid_qty, ask, ask_qty]
        else:
            if bid is not None:
                book[0] = bid
            if bid_qty is not None:
                book[1] = bid_qty
            if ask is not None:
                book[2] = ask
            if ask_qty is not None:
                book[3] = ask_qty
        if seq is not None:
            self._book_seq[symbol] = seq
        if None in book:
            return _TICKERS_INCOMPLETE
        return ParsedFrame(events=(QuoteEvent(
            coin=coin, bid=book[0], bid_qty=book[1], ask=book[2], ask_qty=book[3], ts_ms=ts,  # type: ignore[arg-type]
            seq=seq,
        ),))


# --- subscription messages ---------------------------------------------------------------------

def subscribe_message(topics: Iterable[str], req_id: str | int) -> str:
    """The JSON text of ``{"op": "subscribe", "args": [...], "req_id": "<req_id>"}``; Bybit
    answers ``{"success": true, "op": "subscribe", ...}`` (parsed as control ``ack``)."""
    args = list(topics)
    if not args:
        raise ValueError("topics: at least one topic is needed")
    return json.dumps({"op": "subscribe", "args": args, "req_id": str(req_id)})


def ping_message(req_id: str | int | None = None) -> str:
    """``{"op": "ping"}`` (with ``req_id`` when given): send every ``PING_INTERVAL_S``."""
    if req_id is None:
        return '{"op": "ping"}'
    return json.dumps({"op": "ping", "req_id": str(req_id)})
