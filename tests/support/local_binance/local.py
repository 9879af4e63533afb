"""``LocalBinance``: the REST server, the user-data stream, the market stream and the book of
one account, wired together (the package docstring is the manual)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.support.local_binance import errors as E
from tests.support.local_binance.errors import BinanceError
from tests.support.local_binance.exchange_info import builtin_exchange_info, load_exchange_info, symbol_rules
from tests.support.local_binance.faults import HttpFaults
from tests.support.local_binance.market_stream import MarketStreamServer
from tests.support.local_binance.matching import Exchange, Order
from tests.support.local_binance.rest import RequestRecord, RestServer
from tests.support.local_binance.shapes import order_json, user_trade_json
from tests.support.local_binance.user_stream import UserStreamServer

LISTEN_KEY_VALIDITY_S = 3600.0
EVENT_CLOCKS = ("wall", "trades")


@dataclass(slots=True)
class ListenKey:
    key: str
    expires_at: float  # time.monotonic()
    active: bool = True


class LocalBinance:
    """A local Binance USD-M exchange for one account (see the package docstring)."""

    def __init__(
        self,
        api_key: str = "local-api-key",
        api_secret: str = "local-api-secret",
        *,
        balances: Mapping[str, Decimal] | None = None,
        maker_fee: Decimal = Decimal("0.0002"),
        taker_fee: Decimal = Decimal("0.0004"),
        exchange_info: Mapping[str, Any] | Path | str | None = None,
        recv_window_ms: int = 5000,
        dual_side_position: bool = False,
        fill_model: str = "full",
        event_clock: str = "wall",
        listen_key_validity_s: float = LISTEN_KEY_VALIDITY_S,
        host: str = "127.0.0.1",
    ) -> None:
        if not api_key or not api_secret:
            raise ValueError("api_key and api_secret: both must be non-empty")
        if event_clock not in EVENT_CLOCKS:
            raise ValueError(f"event_clock: must be one of {', '.join(EVENT_CLOCKS)}, got {event_clock!r}")
        self.api_key = api_key
        self.api_secret = api_secret
        self.recv_window_ms = recv_window_ms
        self.event_clock = event_clock
        self.listen_key_validity_s = listen_key_validity_s
        if exchange_info is None:
            info: dict[str, Any] = builtin_exchange_info()
        elif isinstance(exchange_info, (str, Path)):
            info = load_exchange_info(exchange_info)
        else:
            info = dict(exchange_info)
        self.exchange_info = info
        self.exchange = Exchange(
            symbol_rules(info), balances={"USDT": Decimal("10000")} if balances is None else balances,
            maker_fee=maker_fee, taker_fee=taker_fee, dual_side_position=dual_side_position, fill_model=fill_model)
        self.lock = threading.RLock()  # the book, listen keys, quotes; events are sent under it (in order)
        self._changed = threading.Condition(self.lock)
        self.faults = HttpFaults()
        self.clock_offset_ms = 0
        self.quotes: dict[str, tuple[Decimal, Decimal, Decimal, Decimal]] = {}
        self._listen_keys: dict[str, ListenKey] = {}
        self._log: list[RequestRecord] = []
        self._unrouted_log: list[RequestRecord] = []
        self._trade_ids: dict[str, int] = {}
        self._book_update_id = 1
        self._started = False
        self.rest = RestServer(self, host)
        self.user_stream = UserStreamServer(self._listen_key_active)
        self.market_stream = MarketStreamServer()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalBinance:
        if not self._started:
            self.rest.start()
            self.user_stream.start()
            self.market_stream.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop the three servers (each bounded); idempotent."""
        self.faults.release_delayed()
        self.rest.stop()
        self.user_stream.stop()
        self.market_stream.stop()
        self._started = False

    def __enter__(self) -> LocalBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:<port>``: ccxt's ``urls["api"]`` rebased on it reach this server
        (``api_urls``)."""
        return self.rest.url

    @property
    def user_ws_url(self) -> str:
        """``ws://127.0.0.1:<port>``: connect to ``<user_ws_url>/ws/<listenKey>``."""
        return f"ws://127.0.0.1:{self.user_stream.port}"

    @property
    def market_ws_url(self) -> str:
        """``ws://127.0.0.1:<port>``: the ``[feed] url`` of a binance usdm feed (it appends
        ``/stream?streams=...``)."""
        return f"ws://127.0.0.1:{self.market_stream.port}"

    def api_urls(self) -> dict[str, str]:
        """ccxt ``binanceusdm``'s ``urls["api"]`` moved onto ``rest_url`` (every entry, sapi too)."""
        from adapters.feeds.rest_fallback import rebase_api_urls
        return rebase_api_urls("binanceusdm", self.rest_url)

    def ccxt_config(self, **extra: Any) -> dict[str, Any]:
        """A ccxt ``binanceusdm`` config pointed here with this account's keys; ``extra`` is
        merged over it (``options`` merged one level deep)."""
        config: dict[str, Any] = {"apiKey": self.api_key, "secret": self.api_secret,
                                  "urls": {"api": self.api_urls()}, "enableRateLimit": False, "timeout": 5000,
                                  "options": {}}
        options = {**config["options"], **extra.pop("options", {})}
        config.update(extra)
        config["options"] = options
        return config

    # --- clocks --------------------------------------------------------------------------------

    def server_time_ms(self) -> int:
        """The server clock: wall time plus ``clock_offset_ms`` (what ``/fapi/v1/time`` says and
        what signed timestamps are checked against)."""
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    def set_clock_offset(self, offset_ms: int) -> None:
        """Put the server clock ``offset_ms`` ahead of the wall clock (negative: behind)."""
        self.clock_offset_ms = int(offset_ms)

    def event_time_ms(self, now_ms: int | None = None) -> int:
        """The ``E``/``T`` of events caused by a REST call: the server clock, or with
        ``event_clock="trades"`` the newest replayed trade's time (the server clock before any)."""
        if self.event_clock == "trades":
            with self.lock:
                times = [last.ts_ms for last in self.exchange.last.values()]
            if times:
                return max(times)
        return self.server_time_ms() if now_ms is None else now_ms

    # --- market data ---------------------------------------------------------------------------

    def feed_trade(self, symbol: str, price: Decimal | str, quantity: Decimal | str, ts_ms: int | None = None, *,
                   trade_id: int | None = None, buyer_maker: bool = False) -> int:
        """One trade on the tape of ``symbol``: first the resting orders it reaches fill (their
        events go out), then its ``trade``/``aggTrade`` frame goes to the market stream's
        subscribers. ``ts_ms`` defaults to the server clock, ``trade_id`` to the symbol's next
        id. Returns how many user-data events it caused. Feed from one thread at a time (the
        frames of two concurrent calls may go out in either order).
        ``market_stream.trade_sent_ns(symbol, trade_id)`` is when its frames went out."""
        price, quantity = Decimal(price), Decimal(quantity)
        if price <= 0 or quantity < 0:
            raise ValueError(f"feed_trade: price must be > 0 and quantity >= 0, got {price} x {quantity}")
        with self.lock:
            ts = self.server_time_ms() if ts_ms is None else ts_ms
            if trade_id is None:
                trade_id = self._trade_ids.get(symbol, 1_000_000) + 1
            self._trade_ids[symbol] = trade_id
            event_ms = ts if self.event_clock == "trades" else self.server_time_ms()
            events = self.exchange.on_trade(symbol, price, quantity, ts, event_ms)
            self._emit(events)
            self._changed.notify_all()
        self.market_stream.send_trade(symbol, trade_id=trade_id, price=price, quantity=quantity, ts_ms=ts,
                                      event_ms=event_ms, buyer_maker=buyer_maker)
        return len(events)

    def feed_quote(self, symbol: str, bid: Decimal | str, bid_qty: Decimal | str, ask: Decimal | str,
                   ask_qty: Decimal | str, ts_ms: int | None = None) -> None:
        """A top-of-book change: a ``bookTicker`` frame (matching still prices from trades)."""
        quote = (Decimal(bid), Decimal(bid_qty), Decimal(ask), Decimal(ask_qty))
        with self.lock:
            if symbol not in self.exchange.rules:
                raise ValueError(f"symbol: {symbol!r} is not listed")
            self.quotes[symbol] = quote
            self._book_update_id += 1
            update_id = self._book_update_id
            ts = self.server_time_ms() if ts_ms is None else ts_ms
        self.market_stream.send_book_ticker(symbol, update_id=update_id, bid=quote[0], bid_qty=quote[1],
                                            ask=quote[2], ask_qty=quote[3], ts_ms=ts, event_ms=ts)

    def replay(self, path: Path | str, symbol: str, *, limit: int | None = None,
               before_each: Callable[[int, Decimal, Decimal], None] | None = None) -> int:
        """Feed the trades of a recorded file (any layout ``adapters/feeds/trade_files.py``
        reads: Binance trades/aggTrades CSV, plain or gzip) in file order, at most ``limit``;
        ``before_each(ts_ms, price, qty)`` runs before each (a bench may pace or wait there).
        Bad rows raise. Returns how many trades were fed."""
        from adapters.feeds.trade_files import TradeFileReader, detect_format

        problems: list[str] = []
        reader = TradeFileReader(path, detect_format(path), lambda bad: problems.append(str(bad)))
        count = 0
        for row in reader:
            if problems:
                raise ValueError(f"replay: bad rows in {path}: {problems[:3]}")
            if limit is not None and count >= limit:
                break
            if before_each is not None:
                before_each(row.ts_ms, row.price, row.qty)
            self.feed_trade(symbol, row.price, row.qty, row.ts_ms)
            count += 1
        if problems:
            raise ValueError(f"replay: bad rows in {path}: {problems[:3]}")
        return count

    # --- orders not sent by the client ---------------------------------------------------------

    def place_order(self, symbol: str, side: str, type: str, quantity: Decimal | str,  # noqa: A002 - Binance's name
                    price: Decimal | str | None = None, **params: Any) -> dict[str, Any]:
        """Place an order "by hand" (as a person on the website would: no request, no signature,
        but the same checks and events). Returns the order as ``GET /fapi/v1/order`` shows it;
        a refusal raises ``BinanceError``. ``params`` are Binance's (``timeInForce``,
        ``newClientOrderId``, ``reduceOnly``, ``positionSide``)."""
        request = {"symbol": symbol, "side": side, "type": type, "quantity": str(quantity),
                   **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}}
        if price is not None:
            request["price"] = str(price)
        if type == "LIMIT":
            request.setdefault("timeInForce", "GTC")
        with self.lock:
            request.setdefault("newClientOrderId", f"web_{secrets.token_hex(8)}")
            order, events, _ = self.exchange.place(request, self.event_time_ms(), by_hand=True)
            self._emit(events)
            self._changed.notify_all()
            return order_json(order, self.exchange.rules[order.symbol])

    def cancel_order(self, symbol: str, client_order_id: str) -> dict[str, Any]:
        """Cancel an order by hand (its CANCELED event goes out)."""
        with self.lock:
            order, events = self.exchange.cancel({"symbol": symbol, "origClientOrderId": client_order_id},
                                                 self.event_time_ms())
            self._emit(events)
            self._changed.notify_all()
            return order_json(order, self.exchange.rules[symbol])

    def set_dual_side_position(self, dual: bool) -> None:
        """Hedge mode on (``True``) or off, as if changed on the website (no checks)."""
        with self.lock:
            self.exchange.dual_side_position = dual

    def revoke_api_key(self) -> None:
        """The key stops working (deleted on the website): every keyed request is refused
        HTTP 401 -2015 from now on, including an open session's."""
        self.api_key = "revoked-" + secrets.token_hex(16)

    def set_balance(self, asset: str, amount: Decimal | str) -> None:
        with self.lock:
            self.exchange.wallet[asset] = Decimal(amount)

    # --- faults (shortcuts; see faults.py) -----------------------------------------------------

    def fail(self, path: str | None, status: int = 503, *, times: int | None = 1, method: str | None = None,
             body: Any = None) -> Any:
        return self.faults.fail(path, status, times=times, method=method, body=body)

    def rate_limit(self, retry_after_s: int = 1, *, times: int | None = 1, path: str | None = None) -> Any:
        return self.faults.rate_limit(retry_after_s, times=times, path=path)

    def ban(self, seconds: float) -> int:
        """HTTP 418 for every request for ``seconds`` of server time; returns ``banned_until_ms``."""
        until = self.server_time_ms() + int(seconds * 1000)
        self.faults.ban(until)
        return until

    def lift_ban(self) -> None:
        self.faults.lift_ban()

    @property
    def banned_until_ms(self) -> int:
        return self.faults.banned_until_ms

    def accept_then_timeout(self, path: str = "/fapi/v1/order", *, method: str | None = "POST",
                            delay_s: float | None = None, cut: bool = False, times: int | None = 1) -> Any:
        return self.faults.accept_then_timeout(path, method=method, delay_s=delay_s, cut=cut, times=times)

    def partial_fills(self, parts: int) -> None:
        """Market orders fill in ``parts`` trades (1: whole) until changed."""
        if parts < 1:
            raise ValueError(f"parts: must be at least 1, got {parts}")
        with self.lock:
            self.exchange.market_fill_parts = parts

    def reject_next(self, kind: str | tuple[int, str], times: int = 1) -> None:
        """Refuse the next ``times`` orders that pass every real check with ``kind``:
        ``"balance"`` (-2019), ``"min_notional"`` (-4164), ``"price_filter"`` (-4014),
        ``"reduce_only"`` (-2022) or any ``(code, msg)`` (HTTP 400)."""
        from tests.support.local_binance.matching import FORCED
        if isinstance(kind, str) and kind not in FORCED:
            raise ValueError(f"kind: must be one of {', '.join(FORCED)} or (code, msg), got {kind!r}")
        with self.lock:
            self.exchange.forced.extend([kind] * times)

    def drop_user_stream(self, *, refuse_s: float = 0.0, reset: bool = False) -> int:
        """End every user-data connection without a close frame; new connections are refused
        for ``refuse_s`` seconds. Events sent meanwhile are lost to the client (as on Binance):
        it must poll REST. Returns how many connections were dropped."""
        self.user_stream.refuse_for(refuse_s)
        return self.user_stream.drop_clients(reset=reset)

    def allow_user_stream(self) -> None:
        """Accept user-data connections again now."""
        self.user_stream.refuse_for(0)

    def duplicate_events(self, count: int) -> None:
        """Send each of the next ``count`` user-data events twice."""
        self.user_stream.duplicate(count)

    def hold_events(self) -> None:
        """Keep user-data events back until ``release_events``."""
        self.user_stream.hold()

    def release_events(self, order: Any = None) -> int:
        """Send the held events: in order, ``"reverse"``, or by index list (e.g. ``[1, 0]``:
        TRADE before NEW)."""
        return self.user_stream.release(order)

    def expire_listen_key(self, key: str | None = None) -> None:
        """Expire ``key`` (every active key with ``None``) now: its clients get
        ``{"e": "listenKeyExpired", ...}`` and then a close frame; keep-alive answers -1125."""
        with self.lock:
            keys = [k for k in self._listen_keys.values() if k.active and (key is None or k.key == key)]
            for entry in keys:
                entry.active = False
        for entry in keys:
            now = self.server_time_ms()
            self.user_stream.send(entry.key, {"e": "listenKeyExpired", "E": now, "listenKey": entry.key})
            self.user_stream.close_key(entry.key)

    # --- listen keys (REST) --------------------------------------------------------------------

    def _listen_key_active(self, key: str) -> bool:
        # no lock: called by the user stream's handshake under its own lock (atomic reads)
        entry = self._listen_keys.get(key)
        return entry is not None and entry.active and time.monotonic() < entry.expires_at

    def _active_key(self) -> ListenKey | None:
        for entry in self._listen_keys.values():
            if entry.active and time.monotonic() < entry.expires_at:
                return entry
        return None

    def _listen_key_create(self) -> str:
        """Binance gives back the account's active key (validity extended), else a new one."""
        with self.lock:
            entry = self._active_key()
            if entry is None:
                entry = ListenKey(secrets.token_urlsafe(48)[:64], 0.0)
                self._listen_keys[entry.key] = entry
            entry.expires_at = time.monotonic() + self.listen_key_validity_s
            self._changed.notify_all()
            return entry.key

    def _listen_key_keepalive(self, key: str | None) -> str:
        with self.lock:
            entry = self._active_key() if not key else self._listen_keys.get(key)
            if entry is None or not entry.active or time.monotonic() >= entry.expires_at:
                raise BinanceError(400, *E.LISTEN_KEY_MISSING)
            entry.expires_at = time.monotonic() + self.listen_key_validity_s
            self._changed.notify_all()
            return entry.key

    def _listen_key_close(self, key: str | None) -> None:
        with self.lock:
            entry = self._active_key() if not key else self._listen_keys.get(key)
            if entry is not None:
                entry.active = False
        if entry is not None:
            self.user_stream.close_key(entry.key)

    @property
    def listen_keys(self) -> list[str]:
        """Every listen key handed out, oldest first."""
        with self.lock:
            return list(self._listen_keys)

    @property
    def active_listen_key(self) -> str | None:
        with self.lock:
            entry = self._active_key()
            return None if entry is None else entry.key

    # --- events --------------------------------------------------------------------------------

    def _emit(self, events: Iterable[dict[str, Any]]) -> None:
        """Send user-data events to the active listen key's clients (call under ``lock``)."""
        entry = self._active_key()
        for event in events:
            self.user_stream.send(entry.key if entry is not None else "", event)

    # --- request log (the REST server calls these) ---------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        with self._changed:
            self._log.append(record)
            self._changed.notify_all()

    def _unrouted(self, record: RequestRecord) -> None:
        with self._changed:
            self._unrouted_log.append(record)

    def _answered(self, record: RequestRecord) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- introspection -------------------------------------------------------------------------

    def requests(self, path: str | None = None, method: str | None = None) -> list[RequestRecord]:
        """The request log (arrival order), optionally of one path and method."""
        with self.lock:
            return [r for r in self._log if (path is None or r.path == path) and (method is None or r.method == method)]

    @property
    def unrouted(self) -> list[RequestRecord]:
        with self.lock:
            return list(self._unrouted_log)

    def wait_until(self, predicate: Callable[[LocalBinance], bool], timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds (re-checked at every request, answer, trade or
        order by hand, and at least every 50 ms); ``False`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.05))
            return True

    def wait_for_request(self, path: str, count: int = 1, timeout: float = 5.0, *, method: str | None = None,
                         answered: bool = False) -> bool:
        """``True`` once ``count`` requests to ``path`` arrived (with ``answered``: were
        answered or cut); ``False`` after ``timeout``."""
        def done(local: LocalBinance) -> bool:
            rows = local.requests(path, method)
            if answered:
                rows = [r for r in rows if r.status is not None]
            return len(rows) >= count
        return self.wait_until(done, timeout)

    def wait_for_user_clients(self, count: int = 1, timeout: float = 5.0) -> bool:
        """``True`` once ``count`` user-data connections are open."""
        return self.user_stream.wait_until(lambda server: server.clients >= count, timeout)

    def order(self, client_order_id: str) -> dict[str, Any] | None:
        """The latest order with this client id, as ``GET /fapi/v1/order`` shows it."""
        with self.lock:
            order = self.exchange.by_client.get(client_order_id)
            return None if order is None else order_json(order, self.exchange.rules[order.symbol])

    def orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Every order placed (not refused), oldest first."""
        with self.lock:
            chosen: list[Order] = sorted((o for o in self.exchange.orders.values()
                                          if symbol is None or o.symbol == symbol), key=lambda o: o.seq)
            return [order_json(o, self.exchange.rules[o.symbol]) for o in chosen]

    def submissions(self, client_order_id: str) -> int:
        """How many order requests carried this ``newClientOrderId`` (refused ones too)."""
        with self.lock:
            return self.exchange.submissions[client_order_id]

    def trades(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """The account's fills, as ``GET /fapi/v1/userTrades`` rows, oldest first."""
        with self.lock:
            return [user_trade_json(t, self.exchange.rules[t.symbol]) for t in self.exchange.trades
                    if symbol is None or t.symbol == symbol]

    def position(self, symbol: str, side: str = "BOTH") -> tuple[Decimal, Decimal]:
        """``(signed amount, entry price)`` of a position (zeros when there is none)."""
        with self.lock:
            position = self.exchange.positions.get((symbol, side))
            return (position.amount, position.entry_price) if position else (Decimal(0), Decimal(0))

    def balance(self, asset: str = "USDT") -> Decimal:
        """The wallet balance (fees and realized PnL included)."""
        with self.lock:
            return self.exchange.wallet.get(asset, Decimal(0))

    @property
    def user_events(self) -> list[dict[str, Any]]:
        """Every user-data event sent (held ones too), oldest first."""
        return [event for _, event in self.user_stream.events]
