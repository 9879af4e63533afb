"""The local Binance USD-M exchange (tests/support/local_binance) driven by the real ccxt
``binanceusdm`` client (ccxt 4.5.90) through URL overrides, and by websocket clients.

Nothing here leaves 127.0.0.1; every wait is bounded (``WAIT``); no sleep synchronizes.
"""

from __future__ import annotations

import decimal
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest
import websocket

from adapters.feeds.binance_frames import BinanceFrameParser, combined_url
from adapters.feeds.rest_fallback import CcxtTickerFetcher, rebase_api_urls
from adapters.net.rate_limit import TokenBucket
from adapters.venues.exchange_rules import load_market_rules
from tests.conftest import WAIT
from tests.support.local_binance import SHARED_EXCHANGE_INFO, BinanceError, LocalBinance
from tests.support.local_binance.rest import sign, signature_payload

KEY, SECRET = "test-key-4f1e", "test-secret-9c2a"
BTC = "BTC/USDT:USDT"


@pytest.fixture(autouse=True)
def _decimal_context_restored() -> Iterator[None]:
    """ccxt's amount/price formatting sets ROUND_HALF_UP (and an Underflow trap) on the calling
    thread's decimal context and leaves it there; restore it after each test (see
    ``test_ccxt_changes_the_decimal_context_of_the_calling_thread``)."""
    with decimal.localcontext():
        yield


@pytest.fixture
def local() -> Iterator[LocalBinance]:
    with LocalBinance(KEY, SECRET) as server:
        server.feed_trade("BTCUSDT", "30000", "0.5", trade_id=100)
        yield server


def client(local: LocalBinance, **extra: Any) -> ccxt.binanceusdm:
    return ccxt.binanceusdm(local.ccxt_config(**extra))


@pytest.fixture
def exchange(local: LocalBinance) -> ccxt.binanceusdm:
    exchange = client(local)
    exchange.load_markets()
    return exchange


class UserStream:
    """A websocket client of the user-data stream on its own thread; ``events`` grows."""

    def __init__(self, url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed = threading.Event()
        self._changed = threading.Condition()
        self._ws = websocket.create_connection(url, timeout=WAIT)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                text = self._ws.recv()
                if not text:
                    break
                with self._changed:
                    self.events.append(json.loads(text))
                    self._changed.notify_all()
        except (websocket.WebSocketException, OSError):
            pass
        finally:
            self.closed.set()
            with self._changed:
                self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.events) >= count or self.closed.is_set(), timeout)
            return list(self.events)

    def close(self) -> None:
        self._ws.close()
        self._thread.join(WAIT)


@pytest.fixture
def stream(local: LocalBinance, exchange: ccxt.binanceusdm) -> Iterator[UserStream]:
    key = exchange.fapiPrivatePostListenKey()["listenKey"]
    user = UserStream(f"{local.user_ws_url}/ws/{key}")
    assert local.wait_for_user_clients(1, WAIT)
    yield user
    user.close()


def executions(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["o"]["x"], e["o"]["X"]) for e in events if e["e"] == "ORDER_TRADE_UPDATE"]


# --- the core: markets, orders, fills, account ----------------------------------------------------

def test_load_markets_and_server_time(local: LocalBinance) -> None:
    exchange = client(local)
    markets = exchange.load_markets()
    assert {"BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"} <= set(markets)
    btc = markets[BTC]
    assert btc["id"] == "BTCUSDT" and btc["precision"]["price"] == 0.01 and btc["limits"]["cost"]["min"] == 5
    before = local.server_time_ms()
    assert before <= exchange.fetch_time() <= local.server_time_ms()
    paths = [r.path for r in local.requests()]
    assert "/fapi/v1/exchangeInfo" in paths and "/fapi/v1/time" in paths
    assert not local.unrouted


def test_market_order_fills_at_the_last_trade_as_taker(local: LocalBinance, exchange: ccxt.binanceusdm) -> None:
    order = exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "p0123456789abcdef012-E"})
    assert order["clientOrderId"] == "p0123456789abcdef012-E"
    assert order["status"] == "closed" and order["filled"] == 0.01 and order["average"] == 30000
    request = local.requests("/fapi/v1/order", "POST")[0]
    assert request.params["newClientOrderId"] == "p0123456789abcdef012-E" and "signature" not in request.params
    assert local.submissions("p0123456789abcdef012-E") == 1
    assert local.position("BTCUSDT") == (Decimal("0.01"), Decimal("30000"))
    fee = Decimal("0.01") * 30000 * Decimal("0.0004")
    assert local.balance() == Decimal("10000") - fee
    [trade] = local.trades()
    assert trade["commission"] == "0.12000000" and trade["maker"] is False and trade["side"] == "BUY"


def test_limit_order_rests_then_fills_as_maker_on_a_fed_trade(local: LocalBinance,
                                                             exchange: ccxt.binanceusdm) -> None:
    order = exchange.create_order(BTC, "limit", "buy", 0.02, 29900, {"newClientOrderId": "rest-1"})
    assert order["status"] == "open" and order["filled"] == 0
    local.feed_trade("BTCUSDT", "29950", "1")  # above the limit: nothing
    assert local.order("rest-1")["status"] == "NEW"
    local.feed_trade("BTCUSDT", "29900", "1")  # at the limit: fills whole (fill_model full), maker
    fetched = exchange.fetch_order(None, BTC, {"origClientOrderId": "rest-1"})
    assert fetched["status"] == "closed" and fetched["filled"] == 0.02 and fetched["average"] == 29900
    [trade] = exchange.fetch_my_trades(BTC)
    assert trade["takerOrMaker"] == "maker" and trade["price"] == 29900
    assert trade["fee"]["cost"] == pytest.approx(0.02 * 29900 * 0.0002)
    assert local.position("BTCUSDT") == (Decimal("0.02"), Decimal("29900"))


def test_traded_volume_fill_model_fills_at_most_the_traded_quantity() -> None:
    with LocalBinance(KEY, SECRET, fill_model="traded_volume") as local:
        local.feed_trade("BTCUSDT", "30000", "1")
        exchange = client(local)
        exchange.create_order(BTC, "limit", "sell", 0.05, 30100, {"newClientOrderId": "tv-1"})
        local.feed_trade("BTCUSDT", "30100", "0.02")
        assert local.order("tv-1")["status"] == "PARTIALLY_FILLED"
        assert local.order("tv-1")["executedQty"] == "0.020"
        local.feed_trade("BTCUSDT", "30150", "1")
        assert local.order("tv-1")["status"] == "FILLED"
        assert [t["qty"] for t in local.trades()] == ["0.020", "0.030"]


def test_cancel_and_fetch_order_by_client_id(local: LocalBinance, exchange: ccxt.binanceusdm) -> None:
    exchange.create_order(BTC, "limit", "buy", 0.01, 29000, {"newClientOrderId": "c-1"})
    assert [o["clientOrderId"] for o in exchange.fetch_open_orders(BTC)] == ["c-1"]
    by_cid = exchange.fetch_order(None, BTC, {"clientOrderId": "c-1"})  # ccxt sends origClientOrderId
    assert by_cid["clientOrderId"] == "c-1" and by_cid["status"] == "open"
    assert local.requests("/fapi/v1/order", "GET")[-1].params["origClientOrderId"] == "c-1"
    canceled = exchange.cancel_order(None, BTC, {"origClientOrderId": "c-1"})
    assert canceled["status"] == "canceled"
    assert exchange.fetch_open_orders(BTC) == []
    by_id = exchange.fetch_order(by_cid["id"], BTC)
    assert by_id["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        exchange.cancel_order(None, BTC, {"origClientOrderId": "c-1"})  # no longer working
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        exchange.fetch_order(None, BTC, {"origClientOrderId": "never-sent"})


def test_fetch_my_trades_by_time_from_id_and_order(local: LocalBinance, exchange: ccxt.binanceusdm) -> None:
    first = exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "t-1"})
    local.feed_trade("BTCUSDT", "30010", "1")
    exchange.create_order(BTC, "market", "sell", 0.01, None, {"newClientOrderId": "t-2"})
    trades = exchange.fetch_my_trades(BTC, since=local.server_time_ms() - 60_000)
    assert [(t["side"], t["price"]) for t in trades] == [("buy", 30000), ("sell", 30010)]
    assert trades[1]["info"]["realizedPnl"] == "0.10000000"
    later = exchange.fetch_my_trades(BTC, params={"fromId": trades[1]["id"]})
    assert [t["id"] for t in later] == [trades[1]["id"]]
    of_first = exchange.fetch_my_trades(BTC, params={"orderId": first["id"]})
    assert [t["order"] for t in of_first] == [first["id"]]


def test_balance_positions_leverage_margin_and_position_mode(local: LocalBinance,
                                                             exchange: ccxt.binanceusdm) -> None:
    assert exchange.fetch_balance()["USDT"]["total"] == 10000
    assert exchange.fetch_positions([BTC]) == []
    exchange.create_order(BTC, "market", "sell", 0.01, None, {"newClientOrderId": "pos-1"})
    [position] = exchange.fetch_positions([BTC])
    assert position["side"] == "short" and position["contracts"] == 0.01 and position["entryPrice"] == 30000
    assert position["info"]["positionAmt"] == "-0.010"
    assert exchange.fetch_position_mode(BTC)["hedged"] is False
    assert exchange.set_leverage(5, BTC)["leverage"] == 5
    with pytest.raises(ccxt.MarginModeAlreadySet, match="-4046"):
        exchange.set_margin_mode("cross", BTC)  # Binance: "No need to change margin type."
    with pytest.raises(ccxt.ExchangeError, match="-4048"):
        exchange.set_margin_mode("isolated", BTC)  # a position is open
    balance = exchange.fetch_balance()["USDT"]
    assert balance["total"] == pytest.approx(10000 - 0.12)


def test_reduce_only_that_would_increase_is_refused(local: LocalBinance, exchange: ccxt.binanceusdm) -> None:
    with pytest.raises(ccxt.ExchangeError, match="-2022"):
        exchange.create_order(BTC, "market", "sell", 0.01, None, {"newClientOrderId": "ro-1", "reduceOnly": True})
    exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "ro-2"})
    closing = exchange.create_order(BTC, "market", "sell", 0.03, None, {"newClientOrderId": "ro-3", "reduceOnly": True})
    assert closing["filled"] == 0.01 and closing["status"] == "expired"  # resized to the position
    assert local.position("BTCUSDT")[0] == 0


def test_time_in_force_gtx_fok_ioc(local: LocalBinance, exchange: ccxt.binanceusdm) -> None:
    with pytest.raises(ccxt.InvalidOrder, match="-5022"):
        exchange.create_order(BTC, "limit", "buy", 0.01, 30100, {"newClientOrderId": "gtx-1", "postOnly": True})
    with pytest.raises(ccxt.InvalidOrder, match="-5021"):
        exchange.create_order(BTC, "limit", "buy", 0.01, 29000, {"newClientOrderId": "fok-1", "timeInForce": "FOK"})
    ioc = exchange.create_order(BTC, "limit", "buy", 0.01, 29000, {"newClientOrderId": "ioc-1", "timeInForce": "IOC"})
    assert ioc["status"] == "expired" and ioc["filled"] == 0
    resting = exchange.create_order(BTC, "limit", "buy", 0.01, 29000, {"newClientOrderId": "gtx-2", "postOnly": True})
    assert resting["status"] == "open" and local.requests("/fapi/v1/order", "POST")[-1].params["timeInForce"] == "GTX"


def test_duplicate_client_id_of_a_working_order_is_refused(local: LocalBinance,
                                                          exchange: ccxt.binanceusdm) -> None:
    exchange.create_order(BTC, "limit", "buy", 0.01, 29000, {"newClientOrderId": "dup-1"})
    with pytest.raises(ccxt.ExchangeError, match="-4116"):  # InvalidOrder at fapi.binance.com
        exchange.create_order(BTC, "limit", "buy", 0.01, 29000, {"newClientOrderId": "dup-1"})
    assert local.submissions("dup-1") == 2 and len(local.orders()) == 1


def test_stop_market_goes_through_the_algo_endpoint_and_triggers_on_a_trade(
        local: LocalBinance, exchange: ccxt.binanceusdm, stream: UserStream) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "sl-entry"})
    stop = exchange.create_order(BTC, "market", "sell", 0.01, None,
                                 {"stopPrice": 29000, "reduceOnly": True, "clientOrderId": "sl-1"})
    assert stop["clientOrderId"] == "sl-1" and stop["status"] == "open" and stop["triggerPrice"] == 29000
    sent = local.requests("/fapi/v1/algoOrder", "POST")[0].params
    assert (sent["algoType"], sent["type"], sent["clientAlgoId"]) == ("CONDITIONAL", "STOP_MARKET", "sl-1")
    assert [o["clientOrderId"] for o in exchange.fetch_open_orders(BTC, params={"trigger": True})] == ["sl-1"]
    with pytest.raises(ccxt.ExchangeError, match="-4120"):
        exchange.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
                                       "quantity": "0.01", "stopPrice": "29000"})
    local.feed_trade("BTCUSDT", "29010", "1")  # not yet
    local.feed_trade("BTCUSDT", "28990", "1")  # triggers: a market sell at this trade
    assert exchange.fetch_order(stop["id"], BTC, {"trigger": True})["status"] == "closed"
    assert local.position("BTCUSDT")[0] == 0 and local.order("sl-1")["avgPrice"] == "28990.00000"
    kinds = [(e["e"], e["o"]["X"]) for e in stream.wait_for(10) if e["e"] != "ACCOUNT_UPDATE"][2:]
    assert kinds == [("ALGO_UPDATE", "NEW"), ("ALGO_UPDATE", "TRIGGERING"), ("ORDER_TRADE_UPDATE", "NEW"),
                     ("ORDER_TRADE_UPDATE", "FILLED"), ("ALGO_UPDATE", "TRIGGERED"), ("ALGO_UPDATE", "FINISHED")]
    child = [e["o"] for e in stream.events if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["c"] == "sl-1"][0]
    assert child["si"] == int(stop["id"]) and child["st"] == "ALGO_CONDITION"
    other = exchange.create_order(BTC, "market", "buy", 0.01, None, {"stopPrice": 31000, "clientOrderId": "sb-1"})
    exchange.cancel_order(other["id"], BTC, {"trigger": True})
    assert exchange.fetch_open_orders(BTC, params={"trigger": True}) == []
    with pytest.raises(ccxt.ExchangeError, match="-2021"):  # would trigger at once
        exchange.create_order(BTC, "market", "buy", 0.01, None, {"stopPrice": 28000, "clientOrderId": "sb-2"})


# --- user-data stream ----------------------------------------------------------------------------

def test_user_stream_events_of_a_limit_order_and_its_fill(local: LocalBinance, exchange: ccxt.binanceusdm,
                                                          stream: UserStream) -> None:
    exchange.create_order(BTC, "limit", "buy", 0.01, 29950, {"newClientOrderId": "ws-1"})
    local.feed_trade("BTCUSDT", "29940", "1")
    events = stream.wait_for(3)
    assert [e["e"] for e in events] == ["ORDER_TRADE_UPDATE", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"]
    new, trade = events[0]["o"], events[1]["o"]
    assert (new["x"], new["X"], new["c"], new["t"]) == ("NEW", "NEW", "ws-1", 0)
    assert (trade["x"], trade["X"], trade["l"], trade["z"], trade["L"], trade["ap"]) == (
        "TRADE", "FILLED", "0.010", "0.010", "29950.00", "29950.00000")
    assert trade["m"] is True and trade["N"] == "USDT" and Decimal(trade["n"]) == Decimal("0.01") * 29950 * Decimal(
        "0.0002") and trade["R"] is False and trade["rp"] == "0" and trade["t"] == int(local.trades()[0]["id"])
    account = events[2]["a"]
    assert account["m"] == "ORDER" and account["P"][0]["pa"] == "0.010" and account["P"][0]["ps"] == "BOTH"
    exchange.create_order(BTC, "limit", "sell", 0.01, 31000, {"newClientOrderId": "ws-2"})
    exchange.cancel_order(None, BTC, {"origClientOrderId": "ws-2"})
    assert executions(stream.wait_for(5)[3:]) == [("NEW", "NEW"), ("CANCELED", "CANCELED")]


def test_listen_key_keepalive_expiry_and_refused_keys(local: LocalBinance, exchange: ccxt.binanceusdm,
                                                      stream: UserStream) -> None:
    key = local.active_listen_key
    assert exchange.fapiPrivatePostListenKey()["listenKey"] == key  # the active key comes back
    assert exchange.fapiPrivatePutListenKey()["listenKey"] == key
    assert local.requests("/fapi/v1/listenKey", "PUT")[0].params == {}  # API key only, no signature
    local.expire_listen_key()
    assert stream.wait_for(1)[0] == {"e": "listenKeyExpired", "E": stream.events[0]["E"], "listenKey": key}
    assert stream.closed.wait(WAIT)
    with pytest.raises(ccxt.ExchangeError, match="-1125"):
        exchange.fapiPrivatePutListenKey()
    with pytest.raises(websocket.WebSocketException):
        websocket.create_connection(f"{local.user_ws_url}/ws/{key}", timeout=WAIT)
    fresh = exchange.fapiPrivatePostListenKey()["listenKey"]
    assert fresh != key
    UserStream(f"{local.user_ws_url}/ws/{fresh}").close()


# --- refusals of signed requests ----------------------------------------------------------------

def test_wrong_key_secret_and_missing_key_are_refused_like_binance(local: LocalBinance) -> None:
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        client(local, apiKey="another-key").fetch_balance()
    assert local.requests()[-1].status == 401 and local.requests()[-1].code == -2015
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        client(local, secret="another-secret").fetch_balance()
    assert local.requests()[-1].status == 400
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        client(local, apiKey="another-key").fapiPrivatePostListenKey()


def test_a_key_revoked_while_running_is_an_authentication_error(local: LocalBinance,
                                                                exchange: ccxt.binanceusdm) -> None:
    assert exchange.fetch_balance()["USDT"]["total"] == 10000
    local.revoke_api_key()
    with pytest.raises(ccxt.AuthenticationError, match="-2015") as caught:
        exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "rev-1"})
    assert not isinstance(caught.value, ccxt.DDoSProtection) and local.order("rev-1") is None


def test_signature_covers_the_exact_query_and_body() -> None:
    payload, sent = signature_payload("symbol=BTCUSDT&timestamp=1", "side=BUY&signature=abc")
    assert payload == "symbol=BTCUSDT&timestamp=1side=BUY" and sent == "abc"
    # Binance's documented example (USD-M "SIGNED Endpoint Examples")
    assert sign("2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9",
                "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000"
                "&timestamp=1591702613943") == "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"


def test_a_server_clock_ahead_is_refused_until_ccxt_adjusts_for_it(local: LocalBinance) -> None:
    local.set_clock_offset(-3_000)  # the server is 3 s behind: our timestamps look 3 s ahead
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        client(local).fetch_balance()
    local.set_clock_offset(15_000)  # 15 s ahead: older than ccxt's recvWindow (10 s)
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        client(local).fetch_balance()
    adjusted = client(local, options={"adjustForTimeDifference": True})
    # load_markets signs /sapi/v1/capital/config/getall (fetchCurrencies) BEFORE fetch_markets
    # adjusts the time: with keys and a skewed clock, adjust first (or fetchCurrencies off)
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        adjusted.load_markets()
    adjusted.load_time_difference()  # GET /fapi/v1/time
    adjusted.load_markets()
    assert adjusted.fetch_balance()["USDT"]["total"] == 10000
    without_currencies = client(local, options={"adjustForTimeDifference": True, "fetchCurrencies": False})
    without_currencies.load_markets()  # exchangeInfo, then time: no signed request before it
    assert without_currencies.fetch_balance()["USDT"]["total"] == 10000
    local.set_clock_offset(-3_000)
    adjusted.load_time_difference()
    assert adjusted.fetch_balance()["USDT"]["total"] == 10000


def test_recv_window_is_the_request_s_or_the_server_default(local: LocalBinance) -> None:
    local.set_clock_offset(7_000)
    with pytest.raises(ccxt.InvalidNonce):
        client(local, options={"recvWindow": 5000}).fetch_balance()
    assert client(local).fetch_balance()  # ccxt's default recvWindow 10000 covers 7 s


# --- how ccxt classifies the answers (the venue helper relies on this) ---------------------------

def test_error_classes_ccxt_raises_against_a_local_url(local: LocalBinance, exchange: ccxt.binanceusdm) -> None:
    """ccxt picks its USD-M error table by the URL's host (https://fapi.binance.com/...); at
    any other URL only the generic table applies, so -2019, -4164 and -2022 are plain
    ExchangeError here (InsufficientFunds / InvalidOrder at fapi.binance.com)."""
    local.set_balance("USDT", "10")
    with pytest.raises(ccxt.ExchangeError, match="-2019") as caught:
        exchange.create_order(BTC, "market", "buy", 0.1, None, {"newClientOrderId": "e-1"})
    assert type(caught.value) is ccxt.ExchangeError
    local.set_balance("USDT", "10000")
    with pytest.raises(ccxt.ExchangeError, match="-4164") as caught:
        exchange.create_order(BTC, "limit", "buy", 0.001, 1000, {"newClientOrderId": "e-2"})
    assert type(caught.value) is ccxt.ExchangeError
    with pytest.raises(ccxt.BadRequest, match="-4014"):  # SOLUSDT: 4 price places, tick 0.001
        exchange.fapiPrivatePostOrder({"symbol": "SOLUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1",
                                       "price": "20.0005", "timeInForce": "GTC", "newClientOrderId": "e-3"})
    with pytest.raises(ccxt.BadRequest, match="-1111"):
        exchange.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0015",
                                       "newClientOrderId": "e-4"})
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        exchange.fetch_order(None, BTC, {"origClientOrderId": "e-none"})
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        exchange.cancel_order(None, BTC, {"origClientOrderId": "e-none"})


def test_error_classes_ccxt_raises_at_the_real_host(local: LocalBinance) -> None:
    """The same bodies, classified as ccxt does for https://fapi.binance.com."""
    exchange = ccxt.binanceusdm()
    url = "https://fapi.binance.com/fapi/v1/order"
    cases = {-2019: ccxt.InsufficientFunds, -4164: ccxt.InvalidOrder, -2022: ccxt.InvalidOrder,
             -4116: ccxt.InvalidOrder, -4014: ccxt.BadRequest, -1111: ccxt.BadRequest,
             -2013: ccxt.OrderNotFound, -2011: ccxt.OrderNotFound, -2015: ccxt.AuthenticationError,
             -1022: ccxt.AuthenticationError, -1021: ccxt.InvalidNonce, -5021: ccxt.OrderNotFillable,
             -5022: ccxt.OrderNotFillable}
    for code, expected in cases.items():
        body = json.dumps({"code": code, "msg": "x"})
        with pytest.raises(ccxt.BaseError) as caught:
            exchange.handle_errors(400, "Bad Request", url, "POST", {}, body, json.loads(body), {}, "")
        assert type(caught.value) is expected, (code, type(caught.value))


# --- faults -------------------------------------------------------------------------------------------

def test_accept_then_time_out_places_the_order_once(local: LocalBinance, stream: UserStream) -> None:
    exchange = client(local)
    exchange.load_markets()
    local.accept_then_timeout(delay_s=None)  # held until released: the client's timeout passes first
    exchange.timeout = 500
    with pytest.raises(ccxt.RequestTimeout):
        exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "ato-1"})
    exchange.timeout = int(WAIT * 1000)
    assert local.order("ato-1")["status"] == "FILLED" and local.submissions("ato-1") == 1
    assert executions(stream.wait_for(3)) == [("NEW", "NEW"), ("TRADE", "FILLED")]
    local.faults.release_delayed()
    assert exchange.fetch_order(None, BTC, {"origClientOrderId": "ato-1"})["status"] == "closed"


def test_accept_then_cut_connection(local: LocalBinance, exchange: ccxt.binanceusdm) -> None:
    local.accept_then_timeout(cut=True)
    with pytest.raises(ccxt.NetworkError):
        exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "cut-1"})
    assert local.order("cut-1")["status"] == "FILLED"
    assert local.requests("/fapi/v1/order", "POST")[-1].status == 0
    assert exchange.fetch_order(None, BTC, {"origClientOrderId": "cut-1"})["filled"] == 0.01


def test_5xx_on_a_path_n_times(local: LocalBinance, exchange: ccxt.binanceusdm) -> None:
    rule = local.fail("/fapi/v1/order", 503, times=2)
    for _ in range(2):  # Binance's -1001 body: ccxt's OperationFailed (the parent of NetworkError)
        with pytest.raises(ccxt.OperationFailed, match="-1001") as caught:
            exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "x5-1"})
        assert not isinstance(caught.value, ccxt.NetworkError)
    assert exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "x5-1"})["filled"] == 0.01
    assert rule.fired == 2 and local.submissions("x5-1") == 1  # refused before handling: not counted
    local.fail("/fapi/v1/time", 502, body="html")
    with pytest.raises(ccxt.ExchangeNotAvailable):
        exchange.fetch_time()


def test_429_with_retry_after(local: LocalBinance, exchange: ccxt.binanceusdm) -> None:
    local.rate_limit(retry_after_s=7)
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        exchange.fetch_balance()
    assert exchange.last_response_headers["Retry-After"] == "7"
    assert exchange.fetch_balance()["USDT"]["total"] == 10000


def test_418_ban_refuses_everything_until_it_lifts(local: LocalBinance, exchange: ccxt.binanceusdm) -> None:
    until = local.ban(120)
    assert local.banned_until_ms == until
    for call in (exchange.fetch_time, exchange.fetch_balance,
                 lambda: exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "ban-1"})):
        with pytest.raises(ccxt.DDoSProtection, match="418") as caught:
            call()
        assert str(until) in str(caught.value)
        assert 60 < int(exchange.last_response_headers["Retry-After"]) <= 120  # the seconds left
    assert local.order("ban-1") is None
    local.lift_ban()
    assert exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "ban-1"})["filled"] == 0.01
    short = local.ban(0.05)
    assert local.wait_until(lambda lb: lb.server_time_ms() > short, WAIT)
    assert exchange.fetch_time() > 0  # the ban passed by itself


def test_dropped_user_stream_refused_then_back(local: LocalBinance, exchange: ccxt.binanceusdm,
                                              stream: UserStream) -> None:
    assert local.drop_user_stream(refuse_s=60) == 1
    assert stream.closed.wait(WAIT)
    exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "drop-1"})  # events lost
    key = local.active_listen_key
    with pytest.raises(websocket.WebSocketException):
        websocket.create_connection(f"{local.user_ws_url}/ws/{key}", timeout=WAIT)
    assert local.user_stream.refused >= 1
    local.allow_user_stream()
    again = UserStream(f"{local.user_ws_url}/ws/{key}")
    try:
        assert local.wait_for_user_clients(1, WAIT)
        exchange.create_order(BTC, "market", "sell", 0.01, None, {"newClientOrderId": "drop-2"})
        assert [e["o"]["c"] for e in again.wait_for(2)[:2]] == ["drop-2", "drop-2"]
        assert [t["orderId"] for t in local.trades()] == [
            local.order("drop-1")["orderId"], local.order("drop-2")["orderId"]]  # REST still has both
    finally:
        again.close()


def test_a_paused_user_stream_stays_open_and_sends_nothing(local: LocalBinance, exchange: ccxt.binanceusdm,
                                                           stream: UserStream) -> None:
    local.user_stream.pause()
    exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "mute-1"})
    local.user_stream.resume()
    exchange.create_order(BTC, "market", "sell", 0.01, None, {"newClientOrderId": "mute-2"})
    assert {e["o"]["c"] for e in stream.wait_for(3) if e["e"] == "ORDER_TRADE_UPDATE"} == {"mute-2"}
    assert not stream.closed.is_set() and len(local.user_events) == 6


def test_duplicated_and_reordered_events(local: LocalBinance, exchange: ccxt.binanceusdm,
                                         stream: UserStream) -> None:
    local.duplicate_events(2)
    exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "dupe-1"})
    got = stream.wait_for(5)
    assert executions(got) == [("NEW", "NEW"), ("NEW", "NEW"), ("TRADE", "FILLED"), ("TRADE", "FILLED")]
    assert got[1] == got[0] and got[3] == got[2] and got[4]["e"] == "ACCOUNT_UPDATE"
    local.hold_events()
    exchange.create_order(BTC, "market", "sell", 0.01, None, {"newClientOrderId": "order-2"})
    assert [e["e"] for e in local.user_stream.held()] == ["ORDER_TRADE_UPDATE"] * 2 + ["ACCOUNT_UPDATE"]
    assert local.release_events([1, 0, 2]) == 3  # TRADE before NEW
    assert executions(stream.wait_for(8)[5:]) == [("TRADE", "FILLED"), ("NEW", "NEW")]


def test_partial_fills_of_a_market_order(local: LocalBinance, exchange: ccxt.binanceusdm,
                                        stream: UserStream) -> None:
    local.partial_fills(3)
    order = exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "part-1"})
    assert order["filled"] == 0.01
    trades = local.trades()
    assert [t["qty"] for t in trades] == ["0.003", "0.003", "0.004"]
    assert len({t["id"] for t in trades}) == 3
    updates = [e["o"] for e in stream.wait_for(7) if e["e"] == "ORDER_TRADE_UPDATE"]
    assert [(u["x"], u["X"], u["l"], u["z"]) for u in updates] == [
        ("NEW", "NEW", "0", "0.000"), ("TRADE", "PARTIALLY_FILLED", "0.003", "0.003"),
        ("TRADE", "PARTIALLY_FILLED", "0.003", "0.006"), ("TRADE", "FILLED", "0.004", "0.010")]


def test_forced_rejections(local: LocalBinance, exchange: ccxt.binanceusdm) -> None:
    local.reject_next("balance")
    with pytest.raises(ccxt.ExchangeError, match="-2019"):
        exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "f-1"})
    local.reject_next("min_notional")
    with pytest.raises(ccxt.ExchangeError, match="no smaller than 5"):
        exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "f-2"})
    local.reject_next("price_filter")
    with pytest.raises(ccxt.BadRequest, match="-4014"):
        exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "f-3"})
    assert local.orders() == []
    assert exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "f-4"})["filled"] == 0.01


def test_position_opened_by_hand_and_hedge_mode(local: LocalBinance, exchange: ccxt.binanceusdm,
                                                stream: UserStream) -> None:
    placed = local.place_order("BTCUSDT", "SELL", "MARKET", "0.02")
    assert placed["clientOrderId"].startswith("web_") and placed["status"] == "FILLED"
    assert stream.wait_for(1)[0]["o"]["c"] == placed["clientOrderId"]
    [position] = exchange.fetch_positions([BTC])
    assert position["contracts"] == 0.02 and position["side"] == "short"
    resting = local.place_order("BTCUSDT", "BUY", "LIMIT", "0.01", "29000", newClientOrderId="manual-1")
    assert [o["clientOrderId"] for o in exchange.fetch_open_orders(BTC)] == [resting["clientOrderId"]]
    with pytest.raises(BinanceError) as refused:
        local.place_order("BTCUSDT", "BUY", "MARKET", "0.0001")
    assert refused.value.code == -4004 or refused.value.code == -1111
    local.cancel_order("BTCUSDT", "manual-1")
    local.place_order("BTCUSDT", "BUY", "MARKET", "0.02", reduceOnly=True)
    local.set_dual_side_position(True)
    assert exchange.fetch_position_mode(BTC)["hedged"] is True
    with pytest.raises(ccxt.ExchangeError, match="-4061"):
        exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "h-1"})
    exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "h-2", "positionSide": "LONG"})
    assert local.position("BTCUSDT", "LONG") == (Decimal("0.01"), Decimal("30000"))


def test_ccxt_changes_the_decimal_context_of_the_calling_thread(local: LocalBinance,
                                                                exchange: ccxt.binanceusdm) -> None:
    """A hazard for the venue: after ``create_order`` the thread that called it rounds half-up
    (``Decimal("0.125").quantize(Decimal("0.01"))`` is 0.13, not the default half-even 0.12), so
    a venue calls ccxt inside ``decimal.localcontext()``."""
    with decimal.localcontext():
        exchange.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "ctx-1"})
        assert decimal.getcontext().rounding == decimal.ROUND_HALF_UP
    assert decimal.getcontext().rounding == decimal.ROUND_HALF_EVEN
    assert Decimal("0.125").quantize(Decimal("0.01")) == Decimal("0.12")


# --- the public market stream as the engine's feed subscribes to it --------------------------------

def test_market_stream_serves_what_the_binance_usdm_feed_subscribes(local: LocalBinance) -> None:
    parser = BinanceFrameParser({"BTC": "BTCUSDT", "ETH": "ETHUSDT"}, market="usdm")
    url = combined_url(local.market_ws_url, parser.stream_names(trades="trade"))
    ws = websocket.create_connection(url, timeout=WAIT)
    try:
        assert local.market_stream.wait_until(lambda s: s.clients == 1, WAIT)
        local.feed_trade("BTCUSDT", "30001.5", "0.25", 1_700_000_000_123, trade_id=777, buyer_maker=True)
        local.feed_trade("SOLUSDT", "20", "1")  # not subscribed: not sent
        local.feed_quote("ETHUSDT", "2000.1", "3", "2000.2", "4", 1_700_000_000_200)
        trade = parser.parse(ws.recv()).events[0]
        assert local.market_stream.trade_sent_ns("BTCUSDT", 777) is not None
        assert (trade.coin, trade.price, trade.qty, trade.ts_ms, trade.trade_id) == (
            "BTC", Decimal("30001.5"), Decimal("0.25"), 1_700_000_000_123, "777")
        quote = parser.parse(ws.recv()).events[0]
        assert (quote.coin, quote.bid, quote.ask, quote.ts_ms) == ("ETH", Decimal("2000.1"), Decimal("2000.2"),
                                                                   1_700_000_000_200)
    finally:
        ws.close()
    agg = websocket.create_connection(f"{local.market_ws_url}/ws/btcusdt@aggTrade", timeout=WAIT)
    try:
        assert local.market_stream.wait_until(lambda s: s.subscribers("btcusdt@aggTrade") == 1, WAIT)
        local.feed_trade("BTCUSDT", "30002", "0.1", trade_id=778)
        frame = json.loads(agg.recv())
        assert frame["e"] == "aggTrade" and frame["a"] == 778 and frame["p"] == "30002"
    finally:
        agg.close()


def test_the_engine_s_public_client_reads_rules_and_prices_here(local: LocalBinance) -> None:
    fetcher = CcxtTickerFetcher("binanceusdm", {"BTC": BTC, "SOL": "SOL/USDT:USDT"}, TokenBucket(100, 100),
                                api_urls=rebase_api_urls("binanceusdm", local.rest_url), timeout_s=WAIT)
    try:
        rules = load_market_rules(fetcher)
        assert (rules["BTC"].tick_size, rules["BTC"].qty_step, rules["SOL"].qty_step) == (
            Decimal("0.01"), Decimal("0.001"), Decimal("1"))
        assert fetcher.fetch("BTC")[0] == Decimal("30000")
    finally:
        fetcher.close()
    assert local.requests("/fapi/v1/ticker/24hr")[0].api_key is None
    assert "X-MBX-USED-WEIGHT-1M" in fetcher.exchange.last_response_headers


def test_replay_of_a_recorded_trades_file(shared_data: Path) -> None:
    path = shared_data / "trades" / "binance-futures_BTCUSDT_trades_2020-02-22.csv.gz"
    with LocalBinance(KEY, SECRET, event_clock="trades") as local:
        local.feed_trade("BTCUSDT", "9700", "1", 1582329600000)
        local.place_order("BTCUSDT", "BUY", "LIMIT", "0.01", "9670", newClientOrderId="replay-1")
        assert local.replay(path, "BTCUSDT", limit=2000) == 2000  # prices 9666.66 - 9703.96
        order = local.order("replay-1")
        assert order["status"] == "FILLED" and order["avgPrice"] == "9670.00000"
        assert 1582329602111 <= order["updateTime"] < 1582415993624  # a trade of the file filled it


def test_the_real_exchange_info_answer(shared_data: Path) -> None:
    with LocalBinance(KEY, SECRET, exchange_info=shared_data / SHARED_EXCHANGE_INFO) as local:
        markets = client(local).load_markets()
        assert len(markets) >= 120 and markets["SOL/USDT:USDT"]["precision"]["amount"] == 1
