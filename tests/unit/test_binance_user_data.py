"""Binance user-data and REST row parsers on the real payload samples in ../shared/data."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from adapters.venues.binance_user_data import (
    PayloadError,
    parse_order_row,
    parse_spot_fills,
    parse_trade_row,
    parse_user_data,
    stream_url,
)
from state.order import Fill, OrderUpdate
from state.types import Liquidity, OrderStatus, Side

FUTURES = "payloads/binance/futures"
SPOT = "payloads/binance/spot"


def load(root: Path, name: str) -> Any:
    return json.loads((root / name).read_text())


def load_all(path: Path) -> list[dict[str, Any]]:
    """Every JSON value in ``path`` (the brokerage captures are concatenated objects)."""
    text, decoder, out, at = path.read_text(), json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at] in " \r\n\t,[]":
            at += 1
        if at >= len(text):
            return out
        value, at = decoder.raw_decode(text, at)
        out.append(value)


def test_futures_trade_is_a_fill_with_the_venues_strings(shared_data: Path) -> None:
    data = parse_user_data(load(shared_data, f"{FUTURES}/user_data_json/order_update_trade.json"), {"BTCUSDT": "BTC"})
    assert data.kind == "ORDER_TRADE_UPDATE"
    (fill,) = data.events
    assert fill == Fill(trade_id="12345678", client_order_id="TEST", venue_order_id="8886774", quantity=D("0.001"),
                        price=D("7100.50"), fee=D("0.01000000"), fee_currency="USDT", liquidity=Liquidity.MAKER,
                        ts_ms=1568879465651)


def test_futures_new_is_accepted_and_other_symbols_are_ignored(shared_data: Path) -> None:
    msg = load(shared_data, f"{FUTURES}/user_data_json/order_update_new.json")
    (update,) = parse_user_data(msg, {"BTCUSDT": "BTC"}).events
    assert update == OrderUpdate(client_order_id="TEST", venue_order_id="8886774", status=OrderStatus.ACCEPTED,
                                 ts_ms=1568879465651)
    assert parse_user_data(msg, {"ETHUSDT": "ETH"}).events == ()


def test_futures_liquidation_trade_is_a_fill(shared_data: Path) -> None:
    msg = load(shared_data, f"{FUTURES}/user_data_json/order_update_calculated.json")
    (fill,) = parse_user_data(msg, {"BTCUSDT": "BTC"}).events
    assert isinstance(fill, Fill) and fill.trade_id == "12345999" and fill.liquidity is Liquidity.TAKER
    assert fill.quantity == D("0.014") and fill.price == D("9910.12")


def test_every_futures_sample_parses(shared_data: Path) -> None:
    for path in sorted((shared_data / FUTURES / "user_data_json").glob("*.json")):
        parse_user_data(json.loads(path.read_text()), {"BTCUSDT": "BTC"})  # raises on anything unreadable


def test_account_update_gives_one_way_positions_and_balances(shared_data: Path) -> None:
    data = parse_user_data(load(shared_data, f"{FUTURES}/user_data_json/account_update.json"), {"BTCUSDT": "BTC"})
    assert data.balances == {"USDT": D("122624.12345678")}
    assert data.positions == ()  # the BOTH row is flat; LONG/SHORT rows are hedge mode (refused at start)
    assert data.flat == ("BTC",)


def test_spot_execution_reports(shared_data: Path) -> None:
    coins = {"ETHUSDT": "ETH", "ETHBTC": "ETHBTC"}
    (fill,) = parse_user_data(load(shared_data, f"{SPOT}/user_data_json/execution_report_trade.json"), coins).events
    assert fill == Fill(trade_id="98765432", client_order_id="x-TD67BGP9-T0000000000000", venue_order_id="12345678",
                        quantity=D("1.00000000"), price=D("2500.00000000"), fee=D("0.00100000"), fee_currency="ETH",
                        liquidity=Liquidity.MAKER, ts_ms=1709654401000)
    (canceled,) = parse_user_data(load(shared_data, f"{SPOT}/user_data_json/execution_report_canceled.json"),
                                  coins).events
    assert isinstance(canceled, OrderUpdate) and canceled.status is OrderStatus.CANCELED
    (expired,) = parse_user_data(load(shared_data, f"{SPOT}/user_data_json/execution_report_expired.json"),
                                 coins).events
    assert expired.status is OrderStatus.EXPIRED and "INSUFFICIENT_LIQUIDITY" in (expired.reason or "")
    (wrapped,) = parse_user_data(load(shared_data, f"{SPOT}/user_data_json/execution_report_wrapped.json"),
                                 coins).events
    assert isinstance(wrapped, OrderUpdate) and wrapped.status is OrderStatus.ACCEPTED
    balances = parse_user_data(load(shared_data, f"{SPOT}/user_data_json/account_position.json"), coins).balances
    assert balances == {"USDT": D("12500.00000000"), "ETH": D("5.00000000")}


def test_spot_cancel_names_the_canceled_order_in_C() -> None:
    msg = {"e": "executionReport", "E": 1, "s": "BTCUSDT", "c": "cancel-request-id", "C": "p0123-E", "S": "BUY",
           "x": "CANCELED", "X": "CANCELED", "i": 7, "l": "0", "L": "0", "n": "0", "N": None, "T": 2, "t": -1,
           "m": False}
    (update,) = parse_user_data(msg, {"BTCUSDT": "BTC"}).events
    assert update.client_order_id == "p0123-E" and update.ts_ms == 2


def test_listen_key_expired() -> None:
    assert parse_user_data({"e": "listenKeyExpired", "E": 1, "listenKey": "k"}, {}).expired
    assert not parse_user_data({"e": "TRADE_LITE"}, {}).expired


def test_a_trade_without_trade_id_is_refused() -> None:
    msg = {"e": "ORDER_TRADE_UPDATE", "E": 1, "o": {"s": "BTCUSDT", "c": "x", "S": "BUY", "x": "TRADE",
                                                    "X": "FILLED", "i": 1, "l": "1", "L": "2", "T": 1}}
    with pytest.raises(PayloadError, match="trade id"):
        parse_user_data(msg, {"BTCUSDT": "BTC"})


@pytest.mark.parametrize("name", ["WebSocketFutureMarketSubmittedFilled.json",
                                  "WebSocketFutureStopMarketSubmitPartiallyFilledFilled.json",
                                  "WebSocketGlobalSpotMarketSubmitPartiallyFilledFilled.json",
                                  "WebSocketFutureLimitSubmittedCancelled.json",
                                  "WebSocketSpotLimitFillOrKillSubmittedExpired.json"])
def test_brokerage_sequences_add_up(shared_data: Path, name: str) -> None:
    """A real order's message sequence: accepted first, fills whose quantities add up to the
    last cumulative quantity ``z``, every trade id once."""
    messages = load_all(shared_data / "payloads/binance-lean-brokerage" / name)
    bodies = [m.get("event", m) for m in messages]
    bodies = [b["o"] if isinstance(b.get("o"), dict) else b for b in bodies]
    coins = {str(b["s"]): "C" for b in bodies if isinstance(b, dict) and "s" in b}
    events = [e for m in messages for e in parse_user_data(m, coins).events]
    assert isinstance(events[0], OrderUpdate) and events[0].status is OrderStatus.ACCEPTED
    fills = [e for e in events if isinstance(e, Fill)]
    assert len({f.trade_id for f in fills}) == len(fills)
    last = [b for b in bodies if "z" in b][-1]
    assert sum((f.quantity for f in fills), D(0)) == D(str(last["z"]))


def test_rest_rows(shared_data: Path) -> None:
    order = parse_order_row(load(shared_data, f"{FUTURES}/http_json/order_response.json"), {"BTCUSDT": "BTC"})
    assert (order.client_order_id, order.venue_order_id, order.status, order.quantity, order.side) == (
        "testOrder123", "12345678", OrderStatus.ACCEPTED, D("0.001"), Side.BUY)
    (row,) = load(shared_data, f"{SPOT}/http_json/account_trades_response.json")
    fill = parse_trade_row(row, {"BNBBTC": "BNB"}, "p1-E")
    assert (fill.trade_id, fill.venue_order_id, fill.quantity, fill.price, fill.fee, fill.fee_currency) == (
        "28457", "100234", D("12.00000000"), D("4.00000100"), D("10.10000000"), "BNB")
    spot = load(shared_data, f"{SPOT}/http_json/new_order_full_response.json")
    fills = parse_spot_fills(spot, {spot["symbol"]: "X"})
    assert sum((f.quantity for f in fills), D(0)) == D(spot["executedQty"])


def test_order_row_status_and_partial_pending_cancel() -> None:
    row = {"symbol": "BTCUSDT", "orderId": 5, "clientOrderId": "c", "status": "PENDING_CANCEL", "side": "SELL",
           "origQty": "2", "executedQty": "1", "updateTime": 9}
    assert parse_order_row(row, {"BTCUSDT": "BTC"}).status is OrderStatus.PARTIALLY_FILLED
    with pytest.raises(PayloadError, match="status"):
        parse_order_row({**row, "status": "WHATEVER"}, {"BTCUSDT": "BTC"})


def test_stream_url() -> None:
    assert stream_url("wss://fstream.binance.com", "abc") == "wss://fstream.binance.com/ws/abc"
    assert stream_url("ws://127.0.0.1:9/ws/", "abc") == "ws://127.0.0.1:9/ws/abc"
