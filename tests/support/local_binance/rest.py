"""The local exchange's REST side: an HTTP/1.1 server on 127.0.0.1 (keep-alive, as ccxt's
``requests`` session uses it), the security checks of Binance's signed endpoints, request
weights, and the ``/fapi`` routes ccxt 4.5.90's ``binanceusdm`` calls.

**Security** per route, as Binance does it:

- ``NONE`` (market data: ``time``, ``exchangeInfo``, ``ping``, tickers).
- ``KEY`` (``listenKey``): header ``X-MBX-APIKEY`` must be the configured key: missing ->
  HTTP 401 ``-2014 API-key format invalid.``; another key -> HTTP 401 ``-2015 Invalid API-key,
  IP, or permissions for action.``
- ``SIGNED`` (everything of the account): the key as above, then ``timestamp`` (missing:
  -1102) within ``recvWindow`` (the request's, else the server's default) before the server
  clock and at most 1000 ms after it (else HTTP 400 ``-1021``), then ``signature`` = the
  HMAC-SHA256 hex of the exact query string followed by the exact form body, ``signature``
  itself left out (missing: -1102; wrong: HTTP 400 ``-1022 Signature for this request is not
  valid.``).

**Every answer** has ``X-MBX-USED-WEIGHT-1M`` (the weight used in the current server-clock
minute, this request included) and the order endpoints ``X-MBX-ORDER-COUNT-10S`` and
``X-MBX-ORDER-COUNT-1M``. A path with no route answers HTTP 404 ``{"code": -5000, "msg":
"Path /x, Method GET is invalid"}`` and is kept in ``LocalBinance.unrouted``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.local_binance import errors as E
from tests.support.local_binance.errors import BinanceError, bad
from tests.support.local_binance.matching import DEFAULT_LEVERAGE, parse_decimal
from tests.support.local_binance.shapes import algo_json, fmt, money, order_json, plain, user_trade_json

if TYPE_CHECKING:
    from tests.support.local_binance import LocalBinance

NONE, KEY, SIGNED = "NONE", "KEY", "SIGNED"
MAX_RECV_WINDOW_MS = 60_000
AHEAD_MS = 1_000
JOIN_TIMEOUT_S = 2.0


@dataclass(slots=True)
class RequestRecord:
    """One request as the server received it. ``received_ns``: ``time.time_ns()`` when its
    first line had been read; ``params``: query and form parameters without ``signature``;
    ``status``: the HTTP status answered (``None`` while in progress, ``0`` when the connection
    was cut without an answer)."""

    received_ns: int
    method: str
    path: str
    params: dict[str, str]
    api_key: str | None
    status: int | None = None
    code: int | None = None  # the Binance error code of a refusal

    def get(self, name: str) -> str | None:
        return self.params.get(name)


@dataclass(frozen=True, slots=True)
class Route:
    handler: Callable[[LocalBinance, dict[str, str], int], Any]
    security: str
    weight: int = 1
    order: bool = False  # counts toward the order-rate headers


@dataclass(slots=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float | None = None
    hold: bool = False
    cut: bool = False


def signature_payload(raw_query: str, raw_body: str) -> tuple[str, str | None]:
    """(the signed text, the signature sent) from the raw query string and form body."""
    sent: str | None = None
    kept: list[str] = []
    for raw in (raw_query, raw_body):
        if not raw:
            continue
        parts = raw.split("&")
        rest = []
        for part in parts:
            if part.startswith("signature="):
                sent = part[len("signature="):]
            else:
                rest.append(part)
        kept.append("&".join(rest))
    return "".join(kept), sent


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class RestServer:
    """The HTTP side of ``LocalBinance`` (see the module docstring)."""

    def __init__(self, owner: LocalBinance, host: str = "127.0.0.1") -> None:
        self._owner = owner
        self._host = host
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._sockets_lock = threading.Lock()
        self._weights: dict[int, int] = {}  # minute -> weight
        self._orders: list[int] = []  # server ms of each order request

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local exchange is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        server = ThreadingHTTPServer((self._host, 0), self._handler_class())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="local-binance-rest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._sockets_lock:
            sockets = list(self._sockets)
        for sock in sockets:  # keep-alive connections: wake their handler threads
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            self._thread = None

    # --- one request ---------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, raw_body: str, headers: Mapping[str, str], received_ns: int
               ) -> tuple[RequestRecord, Answer]:
        owner = self._owner
        parts = urlsplit(raw_path)
        path = parts.path
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        params.update(parse_qsl(raw_body, keep_blank_values=True))
        params.pop("signature", None)
        api_key = headers.get("X-MBX-APIKEY")
        record = RequestRecord(received_ns, method, path, params, api_key)
        owner._record(record)
        now_ms = owner.server_time_ms()
        route = ROUTES.get((method, path))
        weight = route.weight if route else 1
        headers_out = self._weigh(weight, now_ms, route is not None and route.order and method == "POST")
        refusal = owner.faults.before(method, path, now_ms)
        if refusal is not None:
            headers_out.update(refusal.headers)
            return record, Answer(refusal.status, refusal.body, headers_out)
        if route is None:
            owner._unrouted(record)
            return record, Answer(404, {"code": -5000, "msg": f"Path {path}, Method {method} is invalid"}, headers_out)
        try:
            self._check(route.security, api_key, parts.query, raw_body, params, now_ms)
            body = route.handler(owner, params, now_ms)
        except BinanceError as error:
            headers_out.update(error.headers)
            record.code = error.code
            return record, Answer(error.status, error.body, headers_out)
        except (ValueError, ArithmeticError) as error:  # a parameter no check foresaw
            record.code = -1100
            return record, Answer(400, {"code": -1100, "msg": f"Illegal characters found in a parameter: "
                                                              f"{type(error).__name__}: {error}"}, headers_out)
        except Exception as error:  # noqa: BLE001 - a bug of the local exchange answers 500, visibly
            record.code = -1000
            return record, Answer(500, {"code": -1000, "msg": f"local exchange failed: {error!r}"}, headers_out)
        answer = Answer(200, body, headers_out)
        after = owner.faults.after(method, path)
        if after is not None:
            answer.cut = after.cut
            answer.delay_s = after.delay_s
            answer.hold = not after.cut
        return record, answer

    def _check(self, security: str, api_key: str | None, raw_query: str, raw_body: str, params: Mapping[str, str],
               now_ms: int) -> None:
        if security == NONE:
            return
        owner = self._owner
        if not api_key:
            raise BinanceError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(api_key, owner.api_key):
            raise BinanceError(401, *E.INVALID_API_KEY)
        if security == KEY:
            return
        timestamp = params.get("timestamp")
        if not timestamp:
            raise E.mandatory("timestamp")
        try:
            ts = int(timestamp)
            window = int(params.get("recvWindow") or owner.recv_window_ms)
        except ValueError:
            raise E.invalid_value("timestamp") from None
        if window <= 0 or window > MAX_RECV_WINDOW_MS:
            raise bad(-1131, "recvWindow must be less than 60000")
        if ts >= now_ms + AHEAD_MS:
            raise bad(*E.AHEAD_TIMESTAMP)
        if now_ms - ts > window:
            raise bad(*E.BAD_TIMESTAMP)
        payload, sent = signature_payload(raw_query, raw_body)
        if not sent:
            raise E.mandatory("signature")
        if not hmac.compare_digest(sent.lower(), sign(owner.api_secret, payload)):
            raise bad(*E.BAD_SIGNATURE)

    def _weigh(self, weight: int, now_ms: int, order: bool) -> dict[str, str]:
        with self._sockets_lock:
            minute = now_ms // 60_000
            self._weights = {m: w for m, w in self._weights.items() if m == minute}
            used = self._weights.get(minute, 0) + weight
            self._weights[minute] = used
            headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
            if order:
                self._orders = [t for t in self._orders if t > now_ms - 60_000] + [now_ms]
                headers["X-MBX-ORDER-COUNT-10S"] = str(sum(t > now_ms - 10_000 for t in self._orders))
                headers["X-MBX-ORDER-COUNT-1M"] = str(len(self._orders))
            return headers

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        rest = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with rest._sockets_lock:
                    rest._sockets.add(self.connection)

            def finish(self) -> None:
                with contextlib.suppress(OSError):
                    super().finish()
                with rest._sockets_lock:
                    rest._sockets.discard(self.connection)

            def _serve(self) -> None:
                received_ns = time.time_ns()
                length = int(self.headers.get("Content-Length") or 0)
                raw_body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                record, answer = rest.handle(self.command, self.path, raw_body, dict(self.headers.items()),
                                             received_ns)
                if answer.cut:
                    record.status = 0
                    rest._owner._answered(record)
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if answer.hold:
                    released = rest._owner.faults.release
                    deadline = None if answer.delay_s is None else time.monotonic() + answer.delay_s
                    while not rest._stopping.is_set() and not released.is_set():
                        wait = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
                        if wait <= 0:
                            break
                        released.wait(wait)
                    if rest._stopping.is_set():
                        record.status = 0
                        rest._owner._answered(record)
                        self.close_connection = True
                        return
                body = answer.body
                data = body.encode() if isinstance(body, str) else json.dumps(body, separators=(",", ":")).encode()
                record.status = answer.status
                try:
                    self.send_response(answer.status)
                    content_type = "text/html" if isinstance(body, str) else "application/json"
                    self.send_header("Content-Type", content_type)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True
                rest._owner._answered(record)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                pass

        return _Handler


# --- routes ------------------------------------------------------------------------------------

def _ping(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    return {}


def _time(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    return {"serverTime": now_ms}


def _exchange_info(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    return {**local.exchange_info, "serverTime": now_ms}


def _last(local: LocalBinance, symbol: str) -> tuple[Decimal, Decimal, int]:
    last = local.exchange.last.get(symbol)
    if last is None:
        return Decimal(0), Decimal(0), 0
    return last.price, last.quantity, last.ts_ms


def _symbols(local: LocalBinance, params: dict[str, str]) -> list[str]:
    rules = local.exchange.symbol(params, required=False)
    return [rules.symbol] if rules is not None else sorted(local.exchange.rules)


def _ticker_24hr(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rows = []
        for symbol in _symbols(local, params):
            rules = local.exchange.rules[symbol]
            price, qty, ts = _last(local, symbol)
            p = fmt(price, rules.price_places)
            rows.append({"symbol": symbol, "priceChange": "0", "priceChangePercent": "0", "weightedAvgPrice": p,
                         "lastPrice": p, "lastQty": fmt(qty, rules.qty_places), "openPrice": p, "highPrice": p,
                         "lowPrice": p, "volume": "0", "quoteVolume": "0", "openTime": ts - 86_400_000,
                         "closeTime": ts, "firstId": 0, "lastId": 0, "count": 0})
    return rows[0] if params.get("symbol") else rows


def _ticker_price(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rows = []
        for symbol in _symbols(local, params):
            price, _, ts = _last(local, symbol)
            rows.append({"symbol": symbol, "price": fmt(price, local.exchange.rules[symbol].price_places),
                         "time": ts})
    return rows[0] if params.get("symbol") else rows


def _book_ticker(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rows = []
        for symbol in _symbols(local, params):
            rules = local.exchange.rules[symbol]
            quote = local.quotes.get(symbol)
            price, qty, ts = _last(local, symbol)
            bid, bid_qty, ask, ask_qty = quote if quote else (price, qty, price, qty)
            rows.append({"symbol": symbol, "bidPrice": fmt(bid, rules.price_places),
                         "bidQty": fmt(bid_qty, rules.qty_places), "askPrice": fmt(ask, rules.price_places),
                         "askQty": fmt(ask_qty, rules.qty_places), "time": ts, "lastUpdateId": ts})
    return rows[0] if params.get("symbol") else rows


def _listen_key_new(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    return {"listenKey": local._listen_key_create()}


def _listen_key_keepalive(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    key = local._listen_key_keepalive(params.get("listenKey"))
    return {"listenKey": key}


def _listen_key_close(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    local._listen_key_close(params.get("listenKey"))
    return {}


def _new_order(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        order, events, accepted = local.exchange.place(params, local.event_time_ms(now_ms))
        local._emit(events)
        shown = order if params.get("newOrderRespType") == "RESULT" else accepted
        return order_json(shown, local.exchange.rules[order.symbol], response=True)


def _query_order(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        order = local.exchange.find(params, E.ORDER_NOT_EXIST)
        return order_json(order, local.exchange.rules[order.symbol])


def _cancel_order(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        order, events = local.exchange.cancel(params, local.event_time_ms(now_ms))
        local._emit(events)
        return order_json(order, local.exchange.rules[order.symbol], response=True)


def _cancel_all(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rules = local.exchange.symbol(params)
        assert rules is not None
        local._emit(local.exchange.cancel_all(rules.symbol, local.event_time_ms(now_ms)))
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


def _open_orders(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rules = local.exchange.symbol(params, required=False)
        orders = local.exchange.open_orders(None if rules is None else rules.symbol)
        return [order_json(o, local.exchange.rules[o.symbol]) for o in orders]


def _open_order(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        order = local.exchange.find(params, E.ORDER_NOT_EXIST)
        if not order.working:
            raise bad(-2013, "Order does not exist.")
        return order_json(order, local.exchange.rules[order.symbol])


def _all_orders(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rules = local.exchange.symbol(params)
        assert rules is not None
        orders = sorted((o for o in local.exchange.orders.values() if o.symbol == rules.symbol), key=lambda o: o.seq)
        if params.get("orderId"):
            orders = [o for o in orders if o.order_id >= int(params["orderId"])]
        if params.get("startTime"):
            orders = [o for o in orders if o.time_ms >= int(params["startTime"])]
        if params.get("endTime"):
            orders = [o for o in orders if o.time_ms <= int(params["endTime"])]
        limit = int(params.get("limit") or 500)
        return [order_json(o, rules) for o in orders[:limit]]


def _user_trades(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rules = local.exchange.symbol(params)
        assert rules is not None
        trades = [t for t in local.exchange.trades if t.symbol == rules.symbol]
        if params.get("orderId"):
            trades = [t for t in trades if t.order_id == int(params["orderId"])]
        if params.get("fromId"):
            trades = [t for t in trades if t.trade_id >= int(params["fromId"])]
        start, end = params.get("startTime"), params.get("endTime")
        if start and end and int(end) - int(start) > 7 * 86_400_000:
            raise bad(-4166, "Search window is restricted to recent 7 days only.")
        if start:
            trades = [t for t in trades if t.time_ms >= int(start)]
        if end:
            trades = [t for t in trades if t.time_ms <= int(end)]
        if not start and not end and not params.get("fromId") and not params.get("orderId"):
            trades = [t for t in trades if t.time_ms >= now_ms - 7 * 86_400_000]
        limit = min(int(params.get("limit") or 500), 1000)
        if start and not params.get("fromId"):
            trades = trades[:limit]
        elif params.get("fromId"):
            trades = trades[:limit]
        else:
            trades = trades[-limit:]
        return [user_trade_json(t, rules) for t in trades]


def _balances(local: LocalBinance, now_ms: int) -> list[dict[str, Any]]:
    available = local.exchange.available_balance()
    rows = []
    for asset, wallet in sorted(local.exchange.wallet.items()):
        free = available if asset == "USDT" else wallet
        rows.append({"accountAlias": "SgsR", "asset": asset, "balance": money(wallet),
                     "crossWalletBalance": money(wallet), "crossUnPnl": money(Decimal(0)),
                     "availableBalance": money(free), "maxWithdrawAmount": money(free), "marginAvailable": True,
                     "updateTime": now_ms})
    return rows


def _balance(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        return _balances(local, now_ms)


def _unrealized(local: LocalBinance, symbol: str, amount: Decimal, entry: Decimal) -> tuple[Decimal, Decimal]:
    """(mark price, unrealized PnL): the mark is the last trade (else the entry)."""
    mark = local.exchange.last[symbol].price if symbol in local.exchange.last else entry
    return mark, (mark - entry) * amount


def _position_rows(local: LocalBinance, version: int, only_open: bool) -> list[dict[str, Any]]:
    exchange = local.exchange
    rows = []
    sides = ("LONG", "SHORT") if exchange.dual_side_position else ("BOTH",)
    open_symbols = {o.symbol for o in exchange.open_orders()}
    for symbol in sorted(exchange.rules):
        rules = exchange.rules[symbol]
        settings = exchange.settings_of(symbol)
        for side in sides:
            position = exchange.positions.get((symbol, side))
            amount = position.amount if position else Decimal(0)
            if only_open and amount == 0 and symbol not in open_symbols:
                continue
            entry = position.entry_price if position else Decimal(0)
            mark, unrealized = _unrealized(local, symbol, amount, entry)
            notional = mark * amount
            margin = abs(notional) / settings.leverage
            row: dict[str, Any] = {
                "symbol": symbol, "positionSide": side, "positionAmt": fmt(amount, rules.qty_places),
                "entryPrice": fmt(entry, max(rules.price_places, 5)),
                "breakEvenPrice": fmt(entry, max(rules.price_places, 5)),
                "markPrice": fmt(mark, 8), "unRealizedProfit": money(unrealized),
                "liquidationPrice": "0", "isolatedMargin": money(Decimal(0)), "notional": money(notional),
                "marginAsset": "USDT", "isolatedWallet": "0", "initialMargin": money(margin),
                "maintMargin": money(abs(notional) * Decimal("0.004")), "positionInitialMargin": money(margin),
                "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0", "askNotional": "0",
                "updateTime": position.update_ms if position else 0,
            }
            if version == 2:
                row.update({"leverage": str(settings.leverage), "maxNotionalValue": "250000",
                            "marginType": "isolated" if settings.margin_type == "ISOLATED" else "cross",
                            "isAutoAddMargin": "false"})
                for name in ("marginAsset", "initialMargin", "maintMargin", "positionInitialMargin",
                             "openOrderInitialMargin", "adl", "bidNotional", "askNotional"):
                    row.pop(name)
            rows.append(row)
    return rows


def _position_risk(version: int) -> Callable[[LocalBinance, dict[str, str], int], Any]:
    def handler(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
        with local.lock:
            rules = local.exchange.symbol(params, required=False)
            rows = _position_rows(local, version, only_open=version == 3)
            return [r for r in rows if rules is None or r["symbol"] == rules.symbol]
    return handler


def _account(version: int) -> Callable[[LocalBinance, dict[str, str], int], Any]:
    def handler(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
        with local.lock:
            exchange = local.exchange
            wallet = exchange.wallet.get("USDT", Decimal(0))
            available = exchange.available_balance()
            positions = _position_rows(local, 3, only_open=version == 3)
            unrealized = sum((Decimal(p["unRealizedProfit"]) for p in positions), Decimal(0))
            initial = sum((Decimal(p["initialMargin"]) for p in positions), Decimal(0))
            assets = [{"asset": asset, "walletBalance": money(amount), "unrealizedProfit": money(
                unrealized if asset == "USDT" else Decimal(0)),
                "marginBalance": money(amount + (unrealized if asset == "USDT" else 0)),
                "maintMargin": "0.00000000", "initialMargin": money(initial if asset == "USDT" else Decimal(0)),
                "positionInitialMargin": money(initial if asset == "USDT" else Decimal(0)),
                "openOrderInitialMargin": "0.00000000", "crossWalletBalance": money(amount),
                "crossUnPnl": money(unrealized if asset == "USDT" else Decimal(0)),
                "availableBalance": money(available if asset == "USDT" else amount),
                "maxWithdrawAmount": money(available if asset == "USDT" else amount), "marginAvailable": True,
                "updateTime": now_ms} for asset, amount in sorted(exchange.wallet.items())]
            body: dict[str, Any] = {
                "totalInitialMargin": money(initial), "totalMaintMargin": "0.00000000",
                "totalWalletBalance": money(wallet), "totalUnrealizedProfit": money(unrealized),
                "totalMarginBalance": money(wallet + unrealized), "totalPositionInitialMargin": money(initial),
                "totalOpenOrderInitialMargin": "0.00000000", "totalCrossWalletBalance": money(wallet),
                "totalCrossUnPnl": money(unrealized), "availableBalance": money(available),
                "maxWithdrawAmount": money(available), "assets": assets,
                "positions": [{"symbol": p["symbol"], "positionSide": p["positionSide"],
                               "positionAmt": p["positionAmt"], "unrealizedProfit": p["unRealizedProfit"],
                               "isolatedMargin": p["isolatedMargin"], "notional": p["notional"],
                               "isolatedWallet": p["isolatedWallet"], "initialMargin": p["initialMargin"],
                               "maintMargin": p["maintMargin"], "updateTime": p["updateTime"]} for p in positions],
            }
            if version == 2:
                body.update({"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                             "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1})
                for row, p in zip(body["positions"], positions):
                    settings = exchange.settings_of(p["symbol"])
                    row.update({"leverage": str(settings.leverage), "isolated": settings.margin_type == "ISOLATED",
                                "entryPrice": p["entryPrice"], "breakEvenPrice": p["breakEvenPrice"],
                                "maxNotional": "250000", "bidNotional": "0", "askNotional": "0",
                                "positionInitialMargin": p["positionInitialMargin"], "openOrderInitialMargin": "0"})
            return body
    return handler


def _position_mode(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        return {"dualSidePosition": local.exchange.dual_side_position}


def _set_position_mode(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    text = (params.get("dualSidePosition") or "").lower()
    if text not in ("true", "false"):
        raise E.mandatory("dualSidePosition")
    with local.lock:
        exchange = local.exchange
        wanted = text == "true"
        if wanted == exchange.dual_side_position:
            raise bad(*E.NO_NEED_POSITION_SIDE)
        if exchange.open_orders() or any(p.amount for p in exchange.positions.values()):
            raise bad(*E.POSITION_SIDE_WITH_POSITION)
        exchange.dual_side_position = wanted
    return {"code": 200, "msg": "success"}


def _leverage(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rules = local.exchange.symbol(params)
        assert rules is not None
        text = params.get("leverage")
        if not text:
            raise E.mandatory("leverage")
        try:
            leverage = int(text)
        except ValueError:
            raise E.leverage_invalid(text) from None
        if not 1 <= leverage <= 125:
            raise E.leverage_invalid(text)
        local.exchange.settings_of(rules.symbol).leverage = leverage
        return {"leverage": leverage, "maxNotionalValue": "250000", "symbol": rules.symbol}


def _margin_type(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rules = local.exchange.symbol(params)
        assert rules is not None
        wanted = params.get("marginType")
        if not wanted:
            raise E.mandatory("marginType")
        wanted = wanted.upper()
        if wanted not in ("ISOLATED", "CROSSED"):
            raise E.invalid_value("marginType")
        settings = local.exchange.settings_of(rules.symbol)
        if settings.margin_type == wanted:
            raise bad(*E.NO_NEED_MARGIN_TYPE)
        if any(p.amount for (s, _), p in local.exchange.positions.items() if s == rules.symbol) \
                or local.exchange.open_orders(rules.symbol):
            raise bad(*E.MARGIN_TYPE_WITH_POSITION)
        settings.margin_type = wanted
    return {"code": 200, "msg": "success"}


def _leverage_bracket(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rows = []
        for symbol in _symbols(local, params):
            rows.append({"symbol": symbol, "notionalCoef": 1.0, "brackets": [
                {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0,
                 "maintMarginRatio": 0.004, "cum": 0.0},
                {"bracket": 2, "initialLeverage": 100, "notionalCap": 250000, "notionalFloor": 50000,
                 "maintMarginRatio": 0.005, "cum": 50.0},
                {"bracket": 3, "initialLeverage": 50, "notionalCap": 3000000, "notionalFloor": 250000,
                 "maintMarginRatio": 0.01, "cum": 1300.0},
                {"bracket": 4, "initialLeverage": DEFAULT_LEVERAGE, "notionalCap": 15000000,
                 "notionalFloor": 3000000, "maintMarginRatio": 0.025, "cum": 46300.0}]})
    return rows[0] if params.get("symbol") else rows


def _symbol_config(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rows = []
        for symbol in _symbols(local, params):
            settings = local.exchange.settings_of(symbol)
            rows.append({"symbol": symbol, "marginType": settings.margin_type, "isAutoAddMargin": False,
                         "leverage": settings.leverage, "maxNotionalValue": "250000"})
        return rows


def _commission_rate(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rules = local.exchange.symbol(params)
        assert rules is not None
        return {"symbol": rules.symbol, "makerCommissionRate": plain(local.exchange.maker_fee),
                "takerCommissionRate": plain(local.exchange.taker_fee)}


def _multi_assets(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    return {"multiAssetsMargin": False}


def _currencies(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    """``/sapi/v1/capital/config/getall``: ccxt's ``load_markets`` asks for it when keys are
    set (``fetchCurrencies``); the spot wallet's coins, minimal rows in the real shape."""
    with local.lock:
        coins = sorted({r.base for r in local.exchange.rules.values()} | {"USDT"})
    return [{"coin": coin, "depositAllEnable": True, "withdrawAllEnable": True, "name": coin, "free": "0",
             "locked": "0", "freeze": "0", "withdrawing": "0", "ipoing": "0", "ipoable": "0", "storage": "0",
             "isLegalMoney": False, "trading": True,
             "networkList": [{"network": coin, "coin": coin, "withdrawIntegerMultiple": "0.00000001",
                              "isDefault": True, "depositEnable": True, "withdrawEnable": True, "depositDesc": "",
                              "withdrawDesc": "", "specialTips": "", "name": coin, "resetAddressStatus": False,
                              "addressRegex": "", "memoRegex": "", "withdrawFee": "0", "withdrawMin": "0",
                              "withdrawMax": "9999999999", "minConfirm": 1, "unLockConfirm": 0,
                              "sameAddress": False}]} for coin in coins]


def _new_algo(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        algo, events = local.exchange.place_algo(params, local.event_time_ms(now_ms))
        local._emit(events)
        return algo_json(algo, local.exchange.rules[algo.symbol])


def _query_algo(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        algo = local.exchange.find_algo(params, E.ORDER_NOT_EXIST)
        return algo_json(algo, local.exchange.rules[algo.symbol])


def _cancel_algo(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        algo, events = local.exchange.cancel_algo(params, local.event_time_ms(now_ms))
        local._emit(events)
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200", "msg": "success"}


def _open_algos(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rules = local.exchange.symbol(params, required=False)
        algos = local.exchange.open_algos(None if rules is None else rules.symbol)
        return [algo_json(a, local.exchange.rules[a.symbol]) for a in algos]


def _all_algos(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    with local.lock:
        rules = local.exchange.symbol(params)
        assert rules is not None
        algos = sorted((a for a in local.exchange.algos.values() if a.symbol == rules.symbol), key=lambda a: a.seq)
        return [algo_json(a, rules) for a in algos]


def _margin_pairs(local: LocalBinance, params: dict[str, str], now_ms: int) -> Any:
    """``/sapi/v1/margin/allPairs`` (ccxt's ``fetchCurrencies`` with ``fetchMargins``)."""
    with local.lock:
        bases = sorted({r.base for r in local.exchange.rules.values()})
    return [{"id": 351637150141315861 + i, "symbol": f"{base}USDT", "base": base, "quote": "USDT",
             "isMarginTrade": True, "isBuyAllowed": True, "isSellAllowed": True} for i, base in enumerate(bases)]


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/fapi/v1/ping"): Route(_ping, NONE),
    ("GET", "/fapi/v1/time"): Route(_time, NONE),
    ("GET", "/fapi/v1/exchangeInfo"): Route(_exchange_info, NONE),
    ("GET", "/fapi/v1/ticker/24hr"): Route(_ticker_24hr, NONE),
    ("GET", "/fapi/v1/ticker/price"): Route(_ticker_price, NONE),
    ("GET", "/fapi/v2/ticker/price"): Route(_ticker_price, NONE),
    ("GET", "/fapi/v1/ticker/bookTicker"): Route(_book_ticker, NONE),
    ("POST", "/fapi/v1/listenKey"): Route(_listen_key_new, KEY),
    ("PUT", "/fapi/v1/listenKey"): Route(_listen_key_keepalive, KEY),
    ("DELETE", "/fapi/v1/listenKey"): Route(_listen_key_close, KEY),
    ("POST", "/fapi/v1/order"): Route(_new_order, SIGNED, 0, order=True),
    ("GET", "/fapi/v1/order"): Route(_query_order, SIGNED),
    ("DELETE", "/fapi/v1/order"): Route(_cancel_order, SIGNED),
    ("DELETE", "/fapi/v1/allOpenOrders"): Route(_cancel_all, SIGNED),
    ("GET", "/fapi/v1/openOrders"): Route(_open_orders, SIGNED),
    ("POST", "/fapi/v1/algoOrder"): Route(_new_algo, SIGNED, 0, order=True),
    ("GET", "/fapi/v1/algoOrder"): Route(_query_algo, SIGNED),
    ("DELETE", "/fapi/v1/algoOrder"): Route(_cancel_algo, SIGNED),
    ("GET", "/fapi/v1/openAlgoOrders"): Route(_open_algos, SIGNED),
    ("GET", "/fapi/v1/allAlgoOrders"): Route(_all_algos, SIGNED, 5),
    ("GET", "/fapi/v1/openOrder"): Route(_open_order, SIGNED),
    ("GET", "/fapi/v1/allOrders"): Route(_all_orders, SIGNED, 5),
    ("GET", "/fapi/v1/userTrades"): Route(_user_trades, SIGNED, 5),
    ("GET", "/fapi/v2/balance"): Route(_balance, SIGNED, 5),
    ("GET", "/fapi/v3/balance"): Route(_balance, SIGNED, 5),
    ("GET", "/fapi/v2/account"): Route(_account(2), SIGNED, 5),
    ("GET", "/fapi/v3/account"): Route(_account(3), SIGNED, 5),
    ("GET", "/fapi/v2/positionRisk"): Route(_position_risk(2), SIGNED, 5),
    ("GET", "/fapi/v3/positionRisk"): Route(_position_risk(3), SIGNED, 5),
    ("GET", "/fapi/v1/positionSide/dual"): Route(_position_mode, SIGNED, 30),
    ("POST", "/fapi/v1/positionSide/dual"): Route(_set_position_mode, SIGNED),
    ("POST", "/fapi/v1/leverage"): Route(_leverage, SIGNED),
    ("POST", "/fapi/v1/marginType"): Route(_margin_type, SIGNED),
    ("GET", "/fapi/v1/leverageBracket"): Route(_leverage_bracket, SIGNED),
    ("GET", "/fapi/v1/symbolConfig"): Route(_symbol_config, SIGNED, 5),
    ("GET", "/fapi/v1/commissionRate"): Route(_commission_rate, SIGNED, 20),
    ("GET", "/fapi/v1/multiAssetsMargin"): Route(_multi_assets, SIGNED, 30),
    ("GET", "/sapi/v1/capital/config/getall"): Route(_currencies, SIGNED, 10),
    ("GET", "/sapi/v1/margin/allPairs"): Route(_margin_pairs, SIGNED, 1),
}

__all__ = ["ROUTES", "RequestRecord", "RestServer", "parse_decimal", "sign", "signature_payload"]
