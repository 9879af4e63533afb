"""CcxtVenue driven by the real ccxt client against local servers on 127.0.0.1: a small fake
of Binance USD-M REST (LocalHttpServer routes) and its user-data websocket (ReplayServer).

The fake checks the API key header only (signatures are the local exchange's business in
tests/support/local_binance); it keeps orders and trades, and pushes ORDER_TRADE_UPDATE
frames to the stream when the test fills or cancels an order.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from typing import Any

import pytest

from adapters.clock import WallClock
from adapters.errors import (
    AmbiguousOutcome,
    AuthenticationFailed,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
    UnsupportedAccount,
)
from adapters.net.rate_limit import TokenBucket
from adapters.venues.ccxt_venue import CcxtVenue
from state.account import StreamState
from state.market import MarketRules
from state.messages import OrderRequest
from state.order import NoticeKind, VenueNotice
from state.secrets import Credentials
from state.types import OrderIntent, OrderStatus, OrderType, Side, TimeInForce
from tests.conftest import WAIT, LogCapture
from tests.support.http_server import LocalHttpServer, Request, Response
from tests.support.ws_server import ReplayServer
from tests.support.venue_sink import EventSink

KEY, SECRET = "FAKEKEY-visible-123", "FAKESECRET-visible-456"
RULES = MarketRules(coin="BTC", tick_size=D("0.1"), qty_step=D("0.001"), min_notional=D("5"))

EXCHANGE_INFO = {
    "timezone": "UTC", "serverTime": 0, "rateLimits": [], "exchangeFilters": [], "assets": [],
    "symbols": [{
        "symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000, "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
        "marginAsset": "USDT", "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
        "quotePrecision": 8, "underlyingType": "COIN", "triggerProtect": "0.0500",
        "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.10", "minPrice": "556.80", "maxPrice": "4529764"},
                    {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
                    {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "120"},
                    {"filterType": "MIN_NOTIONAL", "notional": "5"}],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET"], "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }],
}


def error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> Response:
    return Response({"code": code, "msg": msg}, status=status, headers=headers or {})


class FakeFapi:
    """Binance USD-M REST and user-data stream, just enough for CcxtVenue."""

    def __init__(self, http: LocalHttpServer, ws: ReplayServer) -> None:
        self.http, self.ws = http, ws
        self.lock = threading.Lock()
        self.orders: dict[str, dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []
        self.ids = itertools.count(1000)
        self.trade_ids = itertools.count(50_000)
        self.dual = False
        self.hang_next_submit = False  # accept the order, then answer only after the client gave up
        self.release = threading.Event()
        self.weight = "1"
        routes: dict[str, Callable[[Request], Any]] = {
            "/fapi/v1/exchangeInfo": lambda r: EXCHANGE_INFO,
            "/fapi/v1/time": lambda r: {"serverTime": int(time.time() * 1000) + 250},
            "/fapi/v1/positionSide/dual": self.signed(lambda r: {"dualSidePosition": self.dual}),
            "/fapi/v2/balance": self.signed(lambda r: [{"accountAlias": "x", "asset": "USDT", "balance": "1000.50",
                                                        "availableBalance": "1000.50"}]),
            "/fapi/v1/marginType": self.signed(lambda r: error(400, -4046, "No need to change margin type.")),
            "/fapi/v1/leverage": self.signed(lambda r: {"leverage": int(r.param("leverage") or 0),
                                                        "symbol": r.param("symbol"), "maxNotionalValue": "1"}),
            "/fapi/v1/listenKey": self.signed(lambda r: {"listenKey": "lk1"} if r.method != "DELETE" else {}),
            "/fapi/v1/order": self.signed(self.order),
            "/fapi/v1/userTrades": self.signed(lambda r: [t for t in self.trades
                                                          if str(t["orderId"]) == r.param("orderId")]),
            "/fapi/v1/openOrders": self.signed(lambda r: [o for o in self.orders.values()
                                                          if o["status"] in ("NEW", "PARTIALLY_FILLED")]),
            "/fapi/v2/positionRisk": self.signed(lambda r: []),
        }
        for path, handler in routes.items():
            http.route(path, handler)

    def signed(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        def answer(request: Request) -> Any:
            if request.headers.get("X-MBX-APIKEY") != KEY:
                return error(401, -2015, "Invalid API-key, IP, or permissions for action.")
            result = handler(request)
            if isinstance(result, Response):
                return Response(result.body, status=result.status,
                                headers={"X-MBX-USED-WEIGHT-1M": self.weight, **result.headers})
            return Response(result, headers={"X-MBX-USED-WEIGHT-1M": self.weight})
        return answer

    def order(self, request: Request) -> Any:
        coid = request.param("origClientOrderId")
        if request.method == "GET":
            with self.lock:
                row = self.orders.get(coid or "")
            return dict(row) if row else error(400, -2013, "Order does not exist.")
        if request.method == "DELETE":
            with self.lock:
                row = self.orders.get(coid or "")
                if row is None or row["status"] not in ("NEW", "PARTIALLY_FILLED"):
                    return error(400, -2011, "Unknown order sent.")
                row["status"] = "CANCELED"
            self.push(row, "CANCELED")
            return dict(row)
        coid = request.param("newClientOrderId") or ""
        with self.lock:
            if coid in self.orders:
                return error(400, -4116, "ClientOrderId is duplicated.")
            row = {"orderId": next(self.ids), "symbol": request.param("symbol"), "status": "NEW",
                   "clientOrderId": coid, "price": request.param("price") or "0", "avgPrice": "0",
                   "origQty": request.param("quantity"), "executedQty": "0", "cumQuote": "0",
                   "timeInForce": request.param("timeInForce") or "GTC", "type": request.param("type"),
                   "reduceOnly": request.param("reduceOnly") == "true", "side": request.param("side"),
                   "positionSide": "BOTH", "stopPrice": request.param("stopPrice") or "0",
                   "time": int(time.time() * 1000), "updateTime": int(time.time() * 1000),
                   "params": {k: request.param(k) for k in ("type", "timeInForce", "reduceOnly", "quantity", "price",
                                                             "stopPrice", "newOrderRespType")}}
            self.orders[coid] = row
            hang, self.hang_next_submit = self.hang_next_submit, False
        self.push(row, "NEW")
        if hang:
            self.release.wait(WAIT)  # the client timed out long before
        return {k: v for k, v in row.items() if k != "params"}

    def fill(self, coid: str, quantity: str, price: str, *, push: bool = True) -> dict[str, Any]:
        with self.lock:
            row = self.orders[coid]
            executed = D(row["executedQty"]) + D(quantity)
            row["executedQty"] = str(executed)
            row["status"] = "FILLED" if executed >= D(row["origQty"]) else "PARTIALLY_FILLED"
            trade = {"symbol": row["symbol"], "id": next(self.trade_ids), "orderId": row["orderId"],
                     "side": row["side"], "price": price, "qty": quantity, "realizedPnl": "0",
                     "quoteQty": str(D(price) * D(quantity)), "commission": "0.01", "commissionAsset": "USDT",
                     "time": int(time.time() * 1000), "positionSide": "BOTH", "maker": False, "buyer": True}
            self.trades.append(trade)
        if push:
            self.push(row, "TRADE", trade)
        return trade

    def frame(self, row: dict[str, Any], execution: str, trade: dict[str, Any] | None = None) -> str:
        now = int(time.time() * 1000)
        o = {"s": row["symbol"], "c": row["clientOrderId"], "S": row["side"], "o": row["type"],
             "f": row["timeInForce"], "q": row["origQty"], "p": row["price"], "ap": "0", "sp": row["stopPrice"],
             "x": execution, "X": row["status"], "i": row["orderId"], "l": trade["qty"] if trade else "0",
             "z": row["executedQty"], "L": trade["price"] if trade else "0", "N": "USDT",
             "n": trade["commission"] if trade else "0", "T": now, "t": trade["id"] if trade else 0,
             "m": False, "R": row["reduceOnly"], "ps": "BOTH"}
        return json.dumps({"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": o})

    def push(self, row: dict[str, Any], execution: str, trade: dict[str, Any] | None = None) -> None:
        self.ws.push(self.frame(row, execution, trade))


def order(coid: str = "p0123456789abcdef012-E", *, side: Side = Side.BUY, quantity: str = "0.001",
          intent: OrderIntent = OrderIntent.ENTRY, **extra: Any) -> OrderRequest:
    return OrderRequest(client_order_id=coid, position_id="p1", coin="BTC", side=side, quantity=D(quantity),
                        intent=intent, reference_price=D("50000"), reference_ts_ms=1, **extra)


@pytest.fixture
def servers() -> Iterator[tuple[LocalHttpServer, ReplayServer, FakeFapi]]:
    with LocalHttpServer() as http, ReplayServer() as ws:
        fake = FakeFapi(http, ws)
        yield http, ws, fake
        fake.release.set()


@pytest.fixture
def make_venue(servers: tuple[LocalHttpServer, ReplayServer, FakeFapi]) -> Iterator[Callable[..., CcxtVenue]]:
    http, ws, _ = servers
    made: list[CcxtVenue] = []

    def factory(key: str = KEY, **kwargs: Any) -> CcxtVenue:
        settings: dict[str, Any] = {"timeout_s": 3.0, "poll_s": 0.1, "testnet": False}
        settings.update(kwargs)
        venue = CcxtVenue("binanceusdm", "usdm", symbols={"BTC": "BTCUSDT"},
                          credentials=Credentials(key, SECRET), limiter=TokenBucket(1000, 100), clock=WallClock(),
                          markets=lambda coin: RULES, rest_url=http.url, ws_url=ws.url, leverage={"BTC": 3},
                          **settings)
        made.append(venue)
        return venue

    yield factory
    for venue in made:
        venue.close()


def connected(make_venue: Callable[..., CcxtVenue], servers: Any, **kwargs: Any) -> tuple[CcxtVenue, EventSink]:
    venue = make_venue(**kwargs)
    venue.connect()
    sink = EventSink()
    venue.bind(sink)
    assert servers[1].wait_for_connections(1, WAIT)
    assert wait_until(lambda: venue.status().stream is StreamState.UP)
    return venue, sink


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        event.wait(0.02)
    return True


# --- start ------------------------------------------------------------------------------------------

def test_connect_checks_the_account_and_sets_leverage(make_venue: Any, servers: Any) -> None:
    http, ws, _ = servers
    venue = make_venue()
    startup = venue.connect()
    assert startup.position_mode == "one-way" and startup.leverage == {"BTC": 3}
    assert startup.margin_mode == {"BTC": "isolated"} and startup.balances == {"USDT": D("1000.50")}
    assert 0 <= startup.server_time_offset_ms <= 2000  # the fake runs 250 ms ahead
    assert http.requests("/fapi/v1/leverage")[0].param("leverage") == "3"
    assert http.requests("/fapi/v1/marginType")[0].param("marginType") == "ISOLATED"
    assert ws.wait_for_connections(1, WAIT) and ws.paths[0] == "/ws/lk1"
    assert not http.unrouted, [r.path for r in http.unrouted]
    assert venue.limiter.requests == http.count()  # every request took a token
    assert venue.status().live and venue.status().exchange == "binanceusdm"


def test_hedge_mode_is_refused(make_venue: Any, servers: Any) -> None:
    servers[2].dual = True
    with pytest.raises(UnsupportedAccount, match="hedge mode.*One-way"):
        make_venue().connect()
    assert servers[0].count("/fapi/v1/order") == 0


def test_an_invalid_key_is_refused_clearly_and_never_shown(make_venue: Any, servers: Any, logs: LogCapture) -> None:
    venue = make_venue(key="FAKEKEY-wrong-999")
    with pytest.raises(AuthenticationFailed) as refused:
        venue.connect()
    text = str(refused.value)
    assert "-2015" in text and "key" in text.lower()
    for secret in ("FAKEKEY-wrong-999", SECRET):
        assert secret not in text and secret not in logs.text()
        assert secret not in repr(refused.value.__cause__) + repr(refused.value.__context__)


# --- orders ----------------------------------------------------------------------------------------

def test_submit_then_fill_from_the_stream(make_venue: Any, servers: Any, logs: LogCapture) -> None:
    http, _, fake = servers
    venue, sink = connected(make_venue, servers)
    venue.submit(order())
    sent = fake.orders["p0123456789abcdef012-E"]["params"]
    assert sent == {"type": "MARKET", "timeInForce": None, "reduceOnly": None, "quantity": "0.001", "price": None,
                    "stopPrice": None, "newOrderRespType": "RESULT"}
    assert sink.wait(lambda: OrderStatus.ACCEPTED in sink.updates("p0123456789abcdef012-E"))
    trade = fake.fill("p0123456789abcdef012-E", "0.001", "50010.5")
    assert sink.wait(lambda: len(sink.fills("p0123456789abcdef012-E")) == 1)
    (fill,) = sink.fills("p0123456789abcdef012-E")
    assert (fill.trade_id, fill.quantity, fill.price, fill.fee) == (str(trade["id"]), D("0.001"), D("50010.5"),
                                                                     D("0.01"))
    assert wait_until(lambda: venue.in_flight() == {})
    assert KEY not in logs.text() and SECRET not in logs.text()


def test_exit_is_reduce_only_and_post_only_is_gtx(make_venue: Any, servers: Any) -> None:
    _, _, fake = servers
    venue, _ = connected(make_venue, servers)
    venue.submit(order("p0123456789abcdef012-X1", side=Side.SELL, intent=OrderIntent.EXIT, order_type=OrderType.LIMIT,
                       limit_price=D("51000.0")))
    venue.submit(order("p0123456789abcdef013-E", order_type=OrderType.LIMIT, limit_price=D("49000.10"),
                       post_only=True))
    venue.submit(order("p0123456789abcdef014-E", order_type=OrderType.STOP_LIMIT, limit_price=D("50100"),
                       stop_price=D("50050"), time_in_force=TimeInForce.IOC, quantity="0.010"))
    assert fake.orders["p0123456789abcdef012-X1"]["params"]["reduceOnly"] == "true"
    assert fake.orders["p0123456789abcdef012-X1"]["params"]["price"] == "51000"
    assert fake.orders["p0123456789abcdef013-E"]["params"]["timeInForce"] == "GTX"
    assert fake.orders["p0123456789abcdef013-E"]["params"]["price"] == "49000.1"
    assert fake.orders["p0123456789abcdef013-E"]["params"]["reduceOnly"] is None
    stop = fake.orders["p0123456789abcdef014-E"]["params"]
    assert (stop["type"], stop["stopPrice"], stop["price"], stop["timeInForce"], stop["quantity"]) == (
        "STOP", "50050", "50100", "IOC", "0.01")


def test_off_step_amounts_are_refused_before_sending(make_venue: Any, servers: Any) -> None:
    venue, _ = connected(make_venue, servers)
    with pytest.raises(InvalidOrder, match="quantity 0.0015 is not a positive multiple of 0.001"):
        venue.submit(order(quantity="0.0015"))
    with pytest.raises(InvalidOrder, match="limit price"):
        venue.submit(order(order_type=OrderType.LIMIT, limit_price=D("50000.05")))
    assert servers[0].count("/fapi/v1/order") == 0


def test_spot_orders_never_carry_reduce_only_and_post_only_is_limit_maker(servers: Any) -> None:
    venue = CcxtVenue("binance", "spot", symbols={"BTC": "BTCUSDT"}, credentials=Credentials(KEY, SECRET),
                      limiter=TokenBucket(), clock=WallClock(), markets=lambda coin: RULES, testnet=False,
                      rest_url=servers[0].url)
    try:
        exit_params = venue.dialect.order_params(order(side=Side.SELL, intent=OrderIntent.EXIT), RULES)
        maker = venue.dialect.order_params(order(order_type=OrderType.LIMIT, limit_price=D("1.5"), post_only=True),
                                           RULES)
        stop = venue.dialect.order_params(order(order_type=OrderType.STOP_MARKET, stop_price=D("2")), RULES)
    finally:
        venue.close()
    assert "reduceOnly" not in exit_params and exit_params["newOrderRespType"] == "FULL"
    assert maker["type"] == "LIMIT_MAKER" and "timeInForce" not in maker
    assert stop["type"] == "STOP_LOSS" and stop["stopPrice"] == "2"


def test_ambiguous_submit_that_was_accepted_is_one_order(make_venue: Any, servers: Any) -> None:
    http, _, fake = servers
    venue, sink = connected(make_venue, servers, timeout_s=1.5)
    fake.hang_next_submit = True
    with pytest.raises(AmbiguousOutcome):
        venue.submit(order())
    assert "p0123456789abcdef012-E" in venue.in_flight()
    found = venue.fetch_order("p0123456789abcdef012-E")
    assert found is not None and found.status is OrderStatus.ACCEPTED
    fake.release.set()
    fake.fill("p0123456789abcdef012-E", "0.001", "50000")
    assert sink.wait(lambda: len(sink.fills("p0123456789abcdef012-E")) == 1)
    assert len(fake.orders) == 1
    assert len([r for r in http.requests("/fapi/v1/order") if r.method == "POST"]) == 1


def test_resubmitting_a_known_client_id_looks_it_up(make_venue: Any, servers: Any) -> None:
    http, _, fake = servers
    venue, sink = connected(make_venue, servers)
    venue.submit(order())
    fake.fill("p0123456789abcdef012-E", "0.001", "50000", push=False)
    venue.submit(order())  # e.g. a restart resubmitting a SUBMITTING record: no error, no second order
    assert len(fake.orders) == 1
    assert sink.wait(lambda: len(sink.fills("p0123456789abcdef012-E")) == 1)


def test_cancel(make_venue: Any, servers: Any) -> None:
    venue, sink = connected(make_venue, servers)
    venue.submit(order(order_type=OrderType.LIMIT, limit_price=D("40000")))
    venue.cancel("p0123456789abcdef012-E")
    assert sink.wait(lambda: OrderStatus.CANCELED in sink.updates("p0123456789abcdef012-E"))
    assert sink.updates("p0123456789abcdef012-E").count(OrderStatus.CANCELED) == 1  # REST answer and stream: once
    with pytest.raises(OrderNotFound, match="-2011"):
        venue.cancel("p0123456789abcdef012-E")
    assert venue.fetch_order("p-never-seen-E") is None


def test_duplicate_fill_from_the_stream_is_pushed_once(make_venue: Any, servers: Any) -> None:
    _, ws, fake = servers
    venue, sink = connected(make_venue, servers)
    venue.submit(order(quantity="0.002"))
    trade = fake.fill("p0123456789abcdef012-E", "0.001", "50000")
    fake.push(fake.orders["p0123456789abcdef012-E"], "TRADE", trade)  # the same trade again
    fake.fill("p0123456789abcdef012-E", "0.001", "50001")
    assert sink.wait(lambda: len(sink.fills("p0123456789abcdef012-E")) == 2)
    assert wait_until(lambda: venue.stats()["duplicates"] >= 1)
    assert [f.price for f in sink.fills("p0123456789abcdef012-E")] == [D("50000"), D("50001")]


def test_dropped_stream_fills_come_by_polling(make_venue: Any, servers: Any) -> None:
    http, ws, fake = servers
    venue, sink = connected(make_venue, servers)
    venue.submit(order(quantity="0.003"))
    assert sink.wait(lambda: OrderStatus.ACCEPTED in sink.updates("p0123456789abcdef012-E"))
    ws.stop()  # the stream is lost and cannot come back
    assert sink.wait(lambda: NoticeKind.STREAM_DOWN in sink.notices())
    assert venue.status().stream is StreamState.DOWN and venue.status().polling == 1
    fake.fill("p0123456789abcdef012-E", "0.001", "50000", push=False)
    fake.fill("p0123456789abcdef012-E", "0.002", "50002", push=False)
    assert sink.wait(lambda: len(sink.fills("p0123456789abcdef012-E")) == 2)
    assert wait_until(lambda: venue.in_flight() == {})  # filled: no longer polled
    polled = http.count("/fapi/v1/order")
    assert sum(f.quantity for f in sink.fills("p0123456789abcdef012-E")) == D("0.003")
    assert len({f.trade_id for f in sink.fills("p0123456789abcdef012-E")}) == 2
    assert http.wait_for("/fapi/v1/order", polled + 1, 0.3) is False  # nothing left to poll


def test_stream_back_up_catches_up_and_says_so(make_venue: Any, servers: Any) -> None:
    _, ws, fake = servers
    venue, sink = connected(make_venue, servers)
    venue.submit(order())
    ws.drop_clients()  # it reconnects by itself
    assert sink.wait(lambda: NoticeKind.STREAM_UP in sink.notices())
    assert NoticeKind.STREAM_DOWN in sink.notices()


# --- bans and weight -------------------------------------------------------------------------------

def test_418_stops_every_request_until_the_ban_is_over(make_venue: Any, servers: Any) -> None:
    http, _, fake = servers
    venue, sink = connected(make_venue, servers)
    until = int(time.time() * 1000) + 3000
    http.fail("/fapi/v1/order", 418, times=1, body={"code": -1003, "msg": f"Way too much request weight used; IP "
                                                                          f"banned until {until}."})
    with pytest.raises(RateLimited):
        venue.submit(order())
    assert sink.wait(lambda: NoticeKind.BANNED in sink.notices())
    banned = [e for e in sink.events if isinstance(e, VenueNotice) and e.kind is NoticeKind.BANNED][0]
    assert banned.until_ms == until and venue.status().banned_until_ms == until
    before = http.count()
    with pytest.raises(RateLimited, match="no request before"):
        venue.submit(order("p0123456789abcdef099-E"))
    with pytest.raises(RateLimited):
        venue.fetch_order("p0123456789abcdef099-E")
    assert http.count() == before  # nothing went out
    assert sink.wait(lambda: NoticeKind.BAN_LIFTED in sink.notices(), timeout=2 * WAIT)
    venue.submit(order("p0123456789abcdef099-E"))
    assert "p0123456789abcdef099-E" in fake.orders


def test_429_closes_the_gate_for_retry_after(make_venue: Any, servers: Any) -> None:
    http, _, fake = servers
    venue, sink = connected(make_venue, servers)
    calls = {"n": 0}
    original = fake.order

    def limited(request: Request) -> Any:
        if request.method == "POST" and calls["n"] == 0:
            calls["n"] += 1
            return error(429, -1003, "Too many requests.", {"Retry-After": "1"})
        return original(request)

    http.route("/fapi/v1/order", fake.signed(limited))
    with pytest.raises(RateLimited) as limited_error:
        venue.submit(order())
    assert limited_error.value.retry_after_s == 1
    assert sink.wait(lambda: NoticeKind.BANNED in sink.notices())
    assert sink.wait(lambda: NoticeKind.BAN_LIFTED in sink.notices(), timeout=2 * WAIT)
    venue.submit(order())
    assert len(fake.orders) == 1


def test_high_request_weight_holds_reads_not_orders(make_venue: Any, servers: Any) -> None:
    _, _, fake = servers
    venue, _ = connected(make_venue, servers)
    fake.weight = "2300"  # of 2400
    venue.submit(order())
    with pytest.raises(RateLimited, match="weight"):
        venue.fetch_order("p0123456789abcdef012-E")
    venue.submit(order("p0123456789abcdef013-E"))  # orders still go
    assert len(fake.orders) == 2


def test_keys_refused_while_running_halt_and_say_so(make_venue: Any, servers: Any) -> None:
    http, _, fake = servers
    venue, sink = connected(make_venue, servers)
    http.route("/fapi/v1/order", lambda r: error(401, -2015, "Invalid API-key, IP, or permissions for action."))
    with pytest.raises(AuthenticationFailed):
        venue.submit(order())
    assert sink.wait(lambda: NoticeKind.AUTH_FAILED in sink.notices())
    assert venue.status().halted is not None
    with pytest.raises(AuthenticationFailed, match="halted"):
        venue.submit(order("p0123456789abcdef013-E"))


def test_account_snapshot(make_venue: Any, servers: Any) -> None:
    _, _, fake = servers
    venue, _ = connected(make_venue, servers)
    venue.submit(order(quantity="0.002", order_type=OrderType.LIMIT, limit_price=D("49000")))
    fake.fill("p0123456789abcdef012-E", "0.001", "49000")
    fake.http.route("/fapi/v1/userTrades", fake.signed(lambda r: [
        t for t in fake.trades if r.param("orderId") == str(t["orderId"])
        or int(r.param("startTime") or 0) <= t["time"] <= int(r.param("endTime") or 0)]))
    snapshot = venue.account(fills_since_ms=int(time.time() * 1000) - 60_000)
    assert snapshot.balances == {"USDT": D("1000.50")}
    (working,) = snapshot.open_orders
    assert working.status is OrderStatus.PARTIALLY_FILLED and len(working.fills) == 1
    assert [f.client_order_id for f in snapshot.fills] == ["p0123456789abcdef012-E"]


def test_bybit_order_parameters(servers: Any) -> None:
    def venue_for(market: str) -> CcxtVenue:
        return CcxtVenue("bybit", market, symbols={"BTC": "BTCUSDT"}, credentials=Credentials(KEY, SECRET),
                         limiter=TokenBucket(), clock=WallClock(), markets=lambda coin: RULES, testnet=False,
                         rest_url=servers[0].url)

    linear, spot = venue_for("linear"), venue_for("spot")
    try:
        exit_params = linear.dialect.order_params(order(side=Side.SELL, intent=OrderIntent.EXIT,
                                                        order_type=OrderType.STOP_MARKET, stop_price=D("49000")), RULES)
        maker = linear.dialect.order_params(order(order_type=OrderType.LIMIT, limit_price=D("1.5"), post_only=True),
                                            RULES)
        spot_exit = spot.dialect.order_params(order(side=Side.SELL, intent=OrderIntent.EXIT), RULES)
    finally:
        linear.close()
        spot.close()
    assert exit_params == {"category": "linear", "symbol": "BTCUSDT", "side": "Sell", "qty": "0.001",
                           "orderLinkId": "p0123456789abcdef012-E", "orderType": "Market", "triggerPrice": "49000",
                           "triggerDirection": 2, "reduceOnly": True}
    assert maker["timeInForce"] == "PostOnly" and maker["price"] == "1.5" and "reduceOnly" not in maker
    assert spot_exit["marketUnit"] == "baseCoin" and "reduceOnly" not in spot_exit
    assert spot_exit["category"] == "spot"


def test_from_config_follows_the_venue_section(make_venue: Any, servers: Any) -> None:
    from state.config import parse_config

    http, ws, _ = servers
    config = parse_config({
        "engine": {"mode": "live"},
        "feed": {"source": "binance", "symbols": ["BTC"]},
        "venue": {"rest_url": http.url, "ws_url": ws.url.rstrip("/"), "leverage": {"BTC": 2}, "timeout_s": 2,
                  "poll_s": 0.5, "margin_mode": "cross"},
    })
    venue = CcxtVenue.from_config(config, credentials=Credentials(KEY, SECRET), limiter=TokenBucket(1000, 100),
                                  clock=WallClock(), markets=lambda coin: RULES)
    try:
        assert (venue.name, venue.market, venue.coins, venue.leverage) == ("binanceusdm", "usdm", {"BTC": "BTCUSDT"},
                                                                           {"BTC": 2})
        assert venue.timeout_s == 2 and venue.poll_s == 0.5 and venue.testnet  # testnet by default
        startup = venue.connect()
        assert startup.margin_mode == {"BTC": "cross"} and startup.leverage == {"BTC": 2}
        assert http.requests("/fapi/v1/marginType")[0].param("marginType") == "CROSSED"
    finally:
        venue.close()
    assert KEY not in repr(venue.status()) and KEY not in repr(venue.stats())


def test_the_fake_key_appears_in_no_log_error_or_notice(make_venue: Any, servers: Any, logs: LogCapture) -> None:
    """Every path that makes text (errors of each kind, notices, the status, ccxt's own logging)
    run with a recognizable key and secret: neither appears anywhere."""
    http, ws, fake = servers
    texts: list[str] = []
    venue, sink = connected(make_venue, servers, timeout_s=1.5)
    venue.exchange.logger.debug("Request: %s", {"X-MBX-APIKEY": KEY})  # ccxt's debug line: dropped
    venue.exchange.logger.warning("X-MBX-APIKEY: %s secret %s", KEY, SECRET)  # anything else: redacted
    fake.hang_next_submit = True
    for attempt in (
        lambda: venue.submit(order("p0123456789abcdef001-E")),  # ambiguous
        lambda: venue.submit(order("p0123456789abcdef002-E", quantity="0.0001")),  # invalid
        lambda: venue.cancel("p-none-E"),  # not found
    ):
        with pytest.raises(Exception) as raised:  # noqa: PT011 - each its own kind; the text is checked
            attempt()
        texts.append(f"{raised.value!r} {raised.value}")
    fake.release.set()
    until = int(time.time() * 1000) + 300
    http.fail("/fapi/v1/order", 418, times=1, body={"code": -1003, "msg": f"IP banned until {until}."})
    with pytest.raises(RateLimited) as banned:
        venue.submit(order("p0123456789abcdef003-E"))
    texts.append(str(banned.value))
    assert sink.wait(lambda: NoticeKind.BAN_LIFTED in sink.notices(), timeout=2 * WAIT)
    http.route("/fapi/v1/order", lambda r: error(401, -2015, f"Invalid API-key {r.headers.get('X-MBX-APIKEY')}"))
    with pytest.raises(AuthenticationFailed) as refused:
        venue.submit(order("p0123456789abcdef004-E"))
    texts.append(str(refused.value))
    assert sink.wait(lambda: NoticeKind.AUTH_FAILED in sink.notices())
    texts.extend(e.message for e in sink.events if isinstance(e, VenueNotice))
    texts.append(repr(venue.status()))
    texts.append(repr(venue.stats()))
    venue.close()
    everything = "\n".join(texts) + "\n" + logs.text()
    assert "IP banned" in everything and "***" in everything  # the texts were made, and masked
    assert KEY not in everything and SECRET not in everything


def test_binance_spot_end_to_end(shared_data: Any, logs: LogCapture) -> None:
    """Binance spot (``binance``): the real exchangeInfo and account answers, a FULL order answer
    whose fills are pushed at once, the same trade again from the stream pushed never."""
    spot = shared_data / "payloads/binance/spot/http_json"
    rules = MarketRules(coin="ETH", tick_size=D("0.000001"), qty_step=D("0.0001"), min_notional=D("0.0001"))
    with LocalHttpServer() as http, ReplayServer() as ws:
        account = json.loads((spot / "account_response.json").read_text())
        account["balances"] = [{"asset": "BTC", "free": "1.5", "locked": "0.5"},
                               {"asset": "ETH", "free": "0.01234", "locked": "0"}]
        posted: list[Request] = []

        def new_order(request: Request) -> Any:
            posted.append(request)
            return {"symbol": "ETHBTC", "orderId": 28, "orderListId": -1, "clientOrderId": request.param(
                "newClientOrderId"), "transactTime": 1507725176595, "price": "0.00000000", "origQty": "0.1000",
                "executedQty": "0.1000", "cummulativeQuoteQty": "0.005", "status": "FILLED", "timeInForce": "GTC",
                "type": "MARKET", "side": "BUY", "fills": [
                    {"price": "0.05", "qty": "0.0600", "commission": "0.00006", "commissionAsset": "ETH",
                     "tradeId": 56},
                    {"price": "0.05", "qty": "0.0400", "commission": "0.00004", "commissionAsset": "ETH",
                     "tradeId": 57}]}

        def signed(answer: Callable[[Request], Any]) -> Callable[[Request], Any]:
            return lambda r: answer(r) if r.headers.get("X-MBX-APIKEY") == KEY else error(401, -2015, "bad key")

        http.route("/api/v3/exchangeInfo", (spot / "exchange_info_response.json").read_text())
        http.route("/api/v3/time", lambda r: {"serverTime": int(time.time() * 1000)})
        http.route("/api/v3/account", signed(lambda r: account))
        http.route("/api/v3/userDataStream", signed(lambda r: {"listenKey": "spotkey"}))
        http.route("/api/v3/order", signed(new_order))
        http.route("/api/v3/openOrders", signed(lambda r: []))
        venue = CcxtVenue("binance", "spot", symbols={"ETH": "ETHBTC"}, credentials=Credentials(KEY, SECRET),
                          limiter=TokenBucket(1000, 100), clock=WallClock(), markets=lambda coin: rules,
                          testnet=False, rest_url=http.url, ws_url=ws.url, timeout_s=3.0, poll_s=0.1)
        try:
            startup = venue.connect()
            assert (startup.position_mode, startup.leverage, startup.margin_mode) == ("spot", {}, {})
            assert startup.balances == {"BTC": D("2.0"), "ETH": D("0.01234")}
            assert startup.cash_asset == "BTC", "spot: the market's quote asset (ETH/BTC)"
            assert ws.wait_for_connections(1, WAIT) and ws.paths == ["/ws/spotkey"]
            sink = EventSink()
            venue.bind(sink)
            venue.submit(OrderRequest(client_order_id="p0000000000000000001-E", position_id="p", coin="ETH",
                                      side=Side.BUY, quantity=D("0.1"), intent=OrderIntent.ENTRY,
                                      reference_price=D("0.05"), reference_ts_ms=1))
            assert posted[0].param("newOrderRespType") == "FULL" and posted[0].param("quantity") == "0.1"
            assert posted[0].param("reduceOnly") is None
            assert [f.trade_id for f in sink.fills("p0000000000000000001-E")] == ["56", "57"]
            ws.push(json.dumps({"e": "executionReport", "E": 2, "s": "ETHBTC", "c": "p0000000000000000001-E",
                                "S": "BUY", "o": "MARKET", "f": "GTC", "q": "0.1", "p": "0", "x": "TRADE",
                                "X": "PARTIALLY_FILLED", "i": 28, "l": "0.0600", "z": "0.0600", "L": "0.05",
                                "n": "0.00006", "N": "ETH", "T": 1507725176595, "t": 56, "m": False}))
            assert wait_until(lambda: venue.stats()["duplicates"] >= 1)
            assert len(sink.fills("p0000000000000000001-E")) == 2 and venue.in_flight() == {}
            (held,) = venue.account().positions
            assert (held.coin, held.side, held.quantity) == ("ETH", Side.BUY, D("0.0123"))  # on the step
            assert not http.unrouted, [r.path for r in http.unrouted]
        finally:
            venue.close()
    assert KEY not in logs.text() and SECRET not in logs.text()


def test_fills_since_long_ago_walk_the_venues_windows(make_venue: Any, servers: Any) -> None:
    """USD-M answers at most 7 days of trades per request: a start 20 days back takes three
    windows, each within the limit, the last one ending now."""
    http, _, fake = servers
    venue, _ = connected(make_venue, servers)
    venue.submit(order())
    trade = fake.fill("p0123456789abcdef012-E", "0.001", "50000")
    fake.http.route("/fapi/v1/userTrades", fake.signed(lambda r: [trade] if int(r.param("endTime") or 0) >=
                                                       trade["time"] else []))
    since = int(time.time() * 1000) - 20 * 86_400_000
    fills = venue.dialect.fills_since("BTC", since)
    windows = [(int(r.param("startTime") or 0), int(r.param("endTime") or 0))
               for r in http.requests("/fapi/v1/userTrades")]
    assert len(windows) == 3 and windows[0][0] == since
    assert all(end - start < 7 * 86_400_000 for start, end in windows)
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(windows))
    assert [f.trade_id for f in fills] == [str(trade["id"])]


def test_the_callers_decimal_context_is_left_as_it_was(make_venue: Any, servers: Any) -> None:
    """ccxt sets ROUND_HALF_UP in the calling thread's decimal context (decimal_to_precision):
    the Executor's thread must keep the engine's rounding whatever ccxt does inside a call."""
    import decimal

    from ccxt.base.decimal_to_precision import ROUND, TICK_SIZE, decimal_to_precision

    venue, _ = connected(make_venue, servers)
    before = decimal.getcontext().rounding
    assert before == decimal.ROUND_HALF_EVEN
    venue.call(lambda _params: decimal_to_precision("1.25", ROUND, "0.1", TICK_SIZE))  # what create_order does
    venue.submit(order())
    assert decimal.getcontext().rounding == before
