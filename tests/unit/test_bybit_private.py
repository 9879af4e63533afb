"""Bybit v5 private protocol parsers (adapters/venues/bybit_private_parse.py, re-exported by
bybit_private.py): every private payload sample of ../shared/data/payloads/bybit parsed with
its exact values, the status and execution-type mappings, the auth signature against a known
vector, and bad input that must become a ``problem`` (never an exception)."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.venues.bybit_private import (
    PING_MESSAGE,
    PrivateMessage,
    auth_message,
    auth_signature,
    coin_of,
    parse_execution_row,
    parse_order_row,
    parse_position_row,
    parse_private_message,
    parse_private_text,
    parse_wallet_row,
    private_topics,
    subscribe_message,
)
from state.account import HeldPosition
from state.order import Fill, OrderUpdate, VenueOrder
from state.types import Liquidity, OrderStatus, Side

COINS = {"BTCUSDT": "BTC", "ETHUSDT": "ETH", "SOLUSDT": "SOL", "LTCUSDT": "LTC", "APEXUSDT": "APEX",
         "ICPUSDT": "ICP"}
D = Decimal


def sample(shared_data: Path, name: str) -> str:
    return (shared_data / "payloads" / "bybit" / name).read_text()


def rows(shared_data: Path, name: str) -> list[dict[str, Any]]:
    """``result.list`` of a REST sample, numbers as Decimal (never float)."""
    return json.loads(sample(shared_data, name), parse_float=Decimal)["result"]["list"]


def parse(text: str, category: str = "linear", coins: dict[str, str] = COINS) -> PrivateMessage:
    return parse_private_text(text, coins, category)


def message(topic: str, *data: dict[str, Any], **envelope: Any) -> str:
    return json.dumps({"topic": topic, "creationTime": 1700000009000, "data": list(data), **envelope})


def order_row(**changes: Any) -> dict[str, Any]:
    row = {"category": "linear", "symbol": "BTCUSDT", "orderId": "oid-1", "orderLinkId": "p0123456789abcdef012-E",
           "side": "Buy", "orderType": "Limit", "price": "30000", "qty": "0.010", "timeInForce": "GTC",
           "orderStatus": "New", "cancelType": "UNKNOWN", "rejectReason": "EC_NoError", "leavesQty": "0.010",
           "cumExecQty": "0", "avgPrice": "", "createdTime": "1700000000000", "updatedTime": "1700000001000"}
    row.update(changes)
    return row


def execution_row(**changes: Any) -> dict[str, Any]:
    row = {"category": "linear", "symbol": "BTCUSDT", "execId": "trade-1", "orderId": "oid-1",
           "orderLinkId": "p0123456789abcdef012-E", "side": "Buy", "execPrice": "30000.5", "execQty": "0.004",
           "execFee": "0.066", "feeCurrency": "USDT", "execType": "Trade", "isMaker": False,
           "execTime": "1700000002000"}
    row.update(changes)
    return row


# --- websocket samples ------------------------------------------------------------------------------

def test_execution_sample_is_one_fill(shared_data: Path) -> None:
    parsed = parse(sample(shared_data, "ws_account_execution.json"))
    assert parsed.problem is None and parsed.kind == "execution" and parsed.ignored == 0
    assert parsed.events == (Fill(
        trade_id="0ab1bdf7-4219-438b-b30a-32ec863018f7", client_order_id="test-order-link-001",
        venue_order_id="9aac161b-8ed6-450d-9cab-c5cc67c21784", quantity=D("0.5"), price=D("95900.1"),
        fee=D("26.3725275"), fee_currency="USDT", liquidity=Liquidity.TAKER, ts_ms=1746270400353),)
    assert not parsed.account_changed


def test_rows_of_other_symbols_and_categories_are_ignored_and_counted(shared_data: Path) -> None:
    text = sample(shared_data, "ws_account_execution.json")
    other_symbol = parse(text, coins={"ETHUSDT": "ETH"})
    assert other_symbol.events == () and other_symbol.ignored == 1 and other_symbol.problem is None
    other_category = parse(text, category="spot")  # the row says linear: another market
    assert other_category.events == () and other_category.ignored == 1 and other_category.problem is None
    assert parse(message("order.spot", order_row(category="spot"))).ignored == 1  # a categorised topic


def test_adl_execution_is_a_fill_and_says_the_position_changed(shared_data: Path) -> None:
    parsed = parse(sample(shared_data, "ws_account_execution_adl.json"))
    assert parsed.events == (Fill(
        trade_id="0ab1bdf7-4219-438b-b30a-32ec863018f8", client_order_id="",
        venue_order_id="9aac161b-8ed6-450d-9cab-c5cc67c21785", quantity=D("0.5"), price=D("95850.0"), fee=D("0"),
        fee_currency="USDT", liquidity=Liquidity.TAKER, ts_ms=1746270400398),)
    assert parsed.account_changed
    assert parsed.problem is not None and parsed.problem.startswith("POSITION_CHANGED_BY_VENUE: AdlTrade BTC SELL 0.5")
    assert "0ab1bdf7-4219-438b-b30a-32ec863018f8" in parsed.problem


@pytest.mark.parametrize("name", ["ws_account_execution_fast.json", "ws_account_execution_fast_envelope_id.json"])
def test_execution_fast_is_ignored(shared_data: Path, name: str) -> None:
    parsed = parse(sample(shared_data, name))
    assert parsed.kind == "execution.fast" and parsed.events == () and parsed.problem is None
    assert parsed.ignored == len(json.loads(sample(shared_data, name))["data"])


def test_canceled_order_sample(shared_data: Path) -> None:
    parsed = parse(sample(shared_data, "ws_account_order.json"))
    assert parsed.problem is None and parsed.kind == "order"
    assert parsed.events == (OrderUpdate(client_order_id="client-1", venue_order_id="abcdef123456",
                                         status=OrderStatus.CANCELED, ts_ms=1700000005000, reason="CancelByUser"),)
    assert parsed.cum_filled == {"abcdef123456": D("0")}


@pytest.mark.parametrize(("name", "client_id", "venue_id"), [
    ("ws_account_order_buy_stop_market.json", "test-client-buy-stop-market-001", "test-buy-stop-market-001"),
    ("ws_account_order_limit_if_touched.json", "test-client-lit-001", "test-lit-001"),
    ("ws_account_order_market_if_touched.json", "test-client-mit-001", "test-mit-001"),
    ("ws_account_order_sell_market_if_touched.json", "test-client-sell-mit-001", "test-sell-mit-001"),
    ("ws_account_order_stop_limit.json", "test-client-stop-limit-001", "test-stop-limit-001"),
    ("ws_account_order_stop_loss.json", "test-client-sl-001", "test-stop-loss-001"),
    ("ws_account_order_stop_market.json", "test-client-stop-market-001", "test-stop-market-001"),
    ("ws_account_order_take_profit.json", "test-client-tp-001", "test-take-profit-001"),
])
def test_untriggered_conditional_orders_are_held_by_the_venue(shared_data: Path, name: str, client_id: str,
                                                              venue_id: str) -> None:
    parsed = parse(sample(shared_data, name))
    assert parsed.problem is None
    assert parsed.events == (OrderUpdate(client_order_id=client_id, venue_order_id=venue_id,
                                         status=OrderStatus.ACCEPTED, ts_ms=1672364262457),)
    assert parsed.cum_filled == {venue_id: D("0")}


def test_filled_order_row_is_an_acceptance_the_fills_come_from_executions(shared_data: Path) -> None:
    parsed = parse(sample(shared_data, "ws_account_order_filled.json"))
    assert parsed.events == (OrderUpdate(client_order_id="test-client-order-001",
                                         venue_order_id="5cf98598-39a7-459e-97bf-76ca765ee020",
                                         status=OrderStatus.ACCEPTED, ts_ms=1672364262457),)
    assert parsed.cum_filled == {"5cf98598-39a7-459e-97bf-76ca765ee020": D("0.100")}


def test_partially_filled_then_rejected_spot_order_is_canceled_with_its_fills(shared_data: Path) -> None:
    text = sample(shared_data, "ws_account_order_partially_filled_rejected.json")
    parsed = parse(text, category="spot")
    assert parsed.problem is None
    assert parsed.events == (OrderUpdate(client_order_id="O-20251001-164609-APEX-000-49",
                                         venue_order_id="5cf98598-39a7-459e-97bf-76ca765ee021",
                                         status=OrderStatus.CANCELED, ts_ms=1672364262457,
                                         reason="REJECTED: no reason given"),)
    assert parsed.cum_filled == {"5cf98598-39a7-459e-97bf-76ca765ee021": D("50.0")}
    assert parse(text, category="linear").events == ()  # a spot row on the linear stream


@pytest.mark.parametrize("name", ["ws_account_position.json", "ws_account_position_short.json"])
def test_position_samples(shared_data: Path, name: str) -> None:
    parsed = parse(sample(shared_data, name))
    assert parsed.problem is None and parsed.kind == "position" and parsed.events == ()
    assert parsed.positions == (HeldPosition(coin="ETH", side=Side.SELL, quantity=D("0.01"),
                                             entry_price=D("3641.075")),)
    assert parsed.flat == ()


def test_position_row_with_open_time(shared_data: Path) -> None:
    row = json.loads(sample(shared_data, "ws_account_position_with_open_time.json"))
    assert parse_position_row(row, COINS) == HeldPosition(coin="BTC", side=Side.BUY, quantity=D("0.1"),
                                                          entry_price=D("50000"))
    parsed = parse(message("position", row))
    assert parsed.positions == (HeldPosition(coin="BTC", side=Side.BUY, quantity=D("0.1"), entry_price=D("50000")),)


def test_flat_position_is_no_held_position_but_is_said() -> None:
    for side, size in (("", "0"), ("None", "0"), ("", ""), ("Buy", "0.000")):
        parsed = parse(message("position", {"category": "linear", "symbol": "BTCUSDT", "side": side, "size": size,
                                            "entryPrice": "0"}))
        assert parsed.problem is None and parsed.positions == () and parsed.flat == ("BTC",)


@pytest.mark.parametrize(("name", "balances"), [
    ("ws_account_wallet.json", {"BTC": D("0.00102964"), "USDT": D("9647.75537647")}),
    ("ws_account_wallet_locked_exceeds_total.json", {"USDT": D("100.0")}),
    ("ws_account_wallet_small_order.json", {"USDT": D("51333.82543837")}),
])
def test_wallet_samples(shared_data: Path, name: str, balances: dict[str, Decimal]) -> None:
    for category in ("linear", "spot"):
        parsed = parse(sample(shared_data, name), category=category)
        assert parsed.problem is None and parsed.kind == "wallet" and dict(parsed.balances) == balances
    row = json.loads(sample(shared_data, name))["data"][0]
    assert parse_wallet_row(row) == balances


def test_auth_answers(shared_data: Path) -> None:
    ok = parse(sample(shared_data, "ws_auth_success.json"))
    assert ok == PrivateMessage(kind="auth", auth_ok=True)
    refused = parse(sample(shared_data, "ws_auth_failure.json"))
    assert refused.auth_ok is False and refused.kind == "auth"
    assert refused.problem == "AUTH_FAILED: Invalid apikey (retCode 10003)"


def test_auth_failure_that_echoes_the_request_never_shows_the_key() -> None:
    # Bybit's other failure shape: the op only in the echoed request, whose args hold the key.
    text = json.dumps({"success": False, "ret_msg": "error:USVC1111", "conn_id": "c1",
                       "request": {"op": "auth", "args": ["KEY-visible-123", "1653405853543", "abcdef"]}})
    parsed = parse(text)
    assert parsed.auth_ok is False and parsed.problem == "AUTH_FAILED: error:USVC1111"
    assert "KEY-visible-123" not in repr(parsed)
    assert parse(json.dumps({"op": "auth", "success": False})).problem == "AUTH_FAILED: refused"
    assert parse(json.dumps({"op": "auth", "retCode": 0})).auth_ok is True


def test_subscription_answers_pongs_and_other_ops(shared_data: Path) -> None:
    assert parse(sample(shared_data, "ws_subscription_ack.json")) == PrivateMessage(kind="subscribe", subscribed=True)
    failed = parse(sample(shared_data, "ws_subscription_failure.json"))
    assert failed.subscribed is False
    assert failed.problem == "SUBSCRIBE_FAILED: Invalid topic: invalid.topic.BTCUSDT"
    order_answer = parse(sample(shared_data, "ws_order_response.json"))  # the trade websocket's answer
    assert order_answer == PrivateMessage(kind="order.create", ignored=1)
    refused = parse(json.dumps({"op": "order.create", "retCode": 170131, "retMsg": "Insufficient balance."}))
    assert refused.problem == "ERROR: order.create refused: Insufficient balance. (retCode 170131)"
    for pong in ({"req_id": "", "op": "pong", "args": ["1675418560633"], "conn_id": "c"},
                 {"success": True, "ret_msg": "pong", "conn_id": "c", "op": "ping"}):
        assert parse(json.dumps(pong)) == PrivateMessage(kind="pong")
    error = parse(json.dumps({"success": False, "ret_msg": "error:invalid op", "conn_id": "c"}))
    assert error.problem == "ERROR: error:invalid op"


# --- REST samples ------------------------------------------------------------------------------------

def test_open_orders_rows(shared_data: Path) -> None:
    orders = [parse_order_row(row, COINS) for row in rows(shared_data, "http_get_orders_realtime.json")]
    assert orders == [
        VenueOrder(client_order_id="client-open-1", venue_order_id="open-order-1", coin="ETH", side=Side.BUY,
                   quantity=D("0.010"), status=OrderStatus.ACCEPTED, filled_quantity=D("0"), ts_ms=1761355905606),
        VenueOrder(client_order_id="client-open-2", venue_order_id="open-order-2", coin="ETH", side=Side.SELL,
                   quantity=D("0.010"), status=OrderStatus.ACCEPTED, filled_quantity=D("0"), ts_ms=1761355905609),
    ]


def test_open_conditional_orders_rows(shared_data: Path) -> None:
    orders = [parse_order_row(row, COINS) for row in rows(shared_data, "http_get_orders_realtime_tp_sl.json")]
    assert [(o.client_order_id, o.venue_order_id, o.coin, o.side, o.quantity, o.status, o.ts_ms) for o in orders] == [
        ("client-tp-001", "tp-order-001", "BTC", Side.SELL, D("0.500"), OrderStatus.ACCEPTED, 1672364262457),
        ("client-sl-001", "sl-order-001", "BTC", Side.SELL, D("0.500"), OrderStatus.ACCEPTED, 1672364262457),
    ]
    assert all(o.fills == () and o.filled_quantity == 0 and o.reason is None for o in orders)


def test_order_history_rows(shared_data: Path) -> None:
    (canceled,) = [parse_order_row(row, COINS) for row in rows(shared_data, "http_get_orders_history.json")]
    assert canceled == VenueOrder(client_order_id="client-1", venue_order_id="abcdef123456", coin="BTC",
                                  side=Side.BUY, quantity=D("0.010"), status=OrderStatus.CANCELED,
                                  filled_quantity=D("0"), ts_ms=1700000005000, reason="CancelByUser")
    both = [parse_order_row(row, COINS) for row in rows(shared_data, "http_get_orders_history_with_duplicate.json")]
    assert [(o.client_order_id, o.coin, o.status, o.reason) for o in both] == [
        ("client-open-1", "ETH", OrderStatus.ACCEPTED, None),
        ("client-closed-1", "BTC", OrderStatus.CANCELED, "CancelByUser"),
    ]


def test_partially_filled_rejected_order_row(shared_data: Path) -> None:
    (row,) = rows(shared_data, "http_get_order_partially_filled_rejected.json")
    order = parse_order_row(row, COINS)
    assert order == VenueOrder(client_order_id="O-20251001-164609-APEX-000-49",
                               venue_order_id="5cf98598-39a7-459e-97bf-76ca765ee021", coin="BTC", side=Side.BUY,
                               quantity=D("0.010"), status=OrderStatus.CANCELED, filled_quantity=D("0.005"),
                               ts_ms=1672364262457, reason="REJECTED: INSUFFICIENT_MARGIN")


def test_execution_rows(shared_data: Path) -> None:
    fills = [parse_execution_row(row, COINS) for row in rows(shared_data, "http_get_executions.json")]
    assert fills == [
        Fill(trade_id="e0cbe81d-0f18-5866-9415-cf319b5dab3b", client_order_id="test-order-001",
             venue_order_id="8c065341-7b52-4ca9-ac2c-37e31ac55c94", quantity=D("0.100"), price=D("50000.00"),
             fee=D("0.0150"), fee_currency="USDT", liquidity=Liquidity.MAKER, ts_ms=1672282722429),
        Fill(trade_id="f1dce92e-1g29-6977-a526-dg420c6ecb4c", client_order_id="test-order-002",
             venue_order_id="7b954230-6a41-3ba8-bc20-26d20ab44b83", quantity=D("0.500"), price=D("3000.00"),
             fee=D("0.9000"), fee_currency="USDT", liquidity=Liquidity.TAKER, ts_ms=1672282822529),
    ]


def test_position_rows(shared_data: Path) -> None:
    held = [parse_position_row(row, COINS) for row in rows(shared_data, "http_get_positions.json")]
    assert held == [
        HeldPosition(coin="BTC", side=Side.BUY, quantity=D("0.5"), entry_price=D("50000.00")),
        HeldPosition(coin="ETH", side=Side.SELL, quantity=D("5.0"), entry_price=D("3000.00")),
        None,  # SOLUSDT: size 0, side "": flat
    ]
    (ltc,) = [parse_position_row(row, COINS) for row in rows(shared_data, "http_get_positions_with_open_time.json")]
    assert ltc == HeldPosition(coin="LTC", side=Side.BUY, quantity=D("1"), entry_price=D("70"))


# --- mappings ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "status", "reason"), [
    ({"orderStatus": "Created"}, OrderStatus.ACCEPTED, None),
    ({"orderStatus": "New"}, OrderStatus.ACCEPTED, None),
    ({"orderStatus": "PartiallyFilled", "cumExecQty": "0.004"}, OrderStatus.ACCEPTED, None),
    ({"orderStatus": "Untriggered"}, OrderStatus.ACCEPTED, None),
    ({"orderStatus": "Triggered"}, OrderStatus.ACCEPTED, None),
    ({"orderStatus": "Active"}, OrderStatus.ACCEPTED, None),
    ({"orderStatus": "Filled", "cumExecQty": "0.010"}, OrderStatus.ACCEPTED, None),
    ({"orderStatus": "Cancelled", "cancelType": "CancelByUser"}, OrderStatus.CANCELED, "CancelByUser"),
    ({"orderStatus": "Cancelled", "cancelType": "CancelByReduceOnly", "rejectReason": "EC_NoError"},
     OrderStatus.CANCELED, "CancelByReduceOnly"),
    ({"orderStatus": "Cancelled", "cancelType": "UNKNOWN", "rejectReason": ""}, OrderStatus.CANCELED, "CANCELED"),
    ({"orderStatus": "PartiallyFilledCanceled", "cumExecQty": "0.004"}, OrderStatus.CANCELED, "CANCELED"),
    ({"orderStatus": "Deactivated", "cancelType": "CancelByTpSlTsClear"}, OrderStatus.CANCELED,
     "DEACTIVATED CancelByTpSlTsClear"),
    ({"orderStatus": "Rejected", "rejectReason": "EC_InvalidPriceScale"}, OrderStatus.REJECTED,
     "EC_InvalidPriceScale"),
    ({"orderStatus": "Rejected", "rejectReason": ""}, OrderStatus.REJECTED, "REJECTED"),
    ({"orderStatus": "Rejected", "rejectReason": "EC_Others", "cumExecQty": "0.002"}, OrderStatus.CANCELED,
     "REJECTED: EC_Others"),
    ({"orderStatus": "Cancelled", "timeInForce": "PostOnly", "rejectReason": "EC_PostOnlyWillTakeLiquidity"},
     OrderStatus.EXPIRED, "EC_PostOnlyWillTakeLiquidity"),
    ({"orderStatus": "Cancelled", "timeInForce": "FOK", "cancelType": "UNKNOWN"}, OrderStatus.EXPIRED,
     "FOK: not filled whole"),
    ({"orderStatus": "Cancelled", "timeInForce": "IOC", "cumExecQty": "0.004", "cancelType": "UNKNOWN"},
     OrderStatus.CANCELED, "CANCELED"),
])
def test_order_status_mapping(changes: dict[str, Any], status: OrderStatus, reason: str | None) -> None:
    parsed = parse(message("order", order_row(**changes)))
    assert parsed.problem is None
    assert parsed.events == (OrderUpdate(client_order_id="p0123456789abcdef012-E", venue_order_id="oid-1",
                                         status=status, ts_ms=1700000001000, reason=reason),)
    assert parsed.cum_filled == {"oid-1": D(changes.get("cumExecQty", "0"))}


@pytest.mark.parametrize(("changes", "status", "filled"), [
    ({"orderStatus": "New"}, OrderStatus.ACCEPTED, "0"),
    ({"orderStatus": "PartiallyFilled", "cumExecQty": "0.004"}, OrderStatus.PARTIALLY_FILLED, "0.004"),
    ({"orderStatus": "Filled", "cumExecQty": "0.010"}, OrderStatus.FILLED, "0.010"),
    ({"orderStatus": "Cancelled", "cumExecQty": "0.004"}, OrderStatus.CANCELED, "0.004"),
    ({"orderStatus": "Rejected"}, OrderStatus.REJECTED, "0"),
])
def test_rest_order_row_says_the_filled_statuses(changes: dict[str, Any], status: OrderStatus, filled: str) -> None:
    row = order_row(**changes)
    del row["category"]
    order = parse_order_row(row, COINS)
    assert order.status is status and order.filled_quantity == D(filled) and order.fills == ()


def test_execution_types() -> None:
    funding = execution_row(execType="Funding", execQty="0.5", execFee="-0.12", orderLinkId="")
    assert parse(message("execution", funding)) == PrivateMessage(kind="execution", ignored=1)
    assert parse_execution_row(funding, COINS) is None
    for exec_type in ("BustTrade", "Settle", "Delivery", "BlockTrade", "MovePosition"):
        row = execution_row(execType=exec_type, orderLinkId="", execId=f"x-{exec_type}")
        parsed = parse(message("execution", row))
        assert parsed.account_changed and len(parsed.events) == 1
        assert parsed.problem is not None and parsed.problem.startswith(f"POSITION_CHANGED_BY_VENUE: {exec_type} BTC")
        assert parse_execution_row(row, COINS) == parsed.events[0]


def test_fee_currency_when_the_row_has_none() -> None:
    def currency(category: str, **changes: Any) -> str:
        row = execution_row(category=category, feeCurrency="", **changes)
        (fill,) = parse(message("execution", row), category=category,
                        coins={"BTCUSDT": "BTC", "BTCPERP": "BTC2", "ETHUSDC": "ETH"}).events
        assert isinstance(fill, Fill)
        return fill.fee_currency

    assert currency("linear") == "USDT"
    assert currency("linear", side="Sell") == "USDT"
    assert currency("linear", symbol="BTCPERP") == "USDC"
    assert currency("linear", symbol="ETHUSDC") == "USDC"
    assert currency("spot", side="Buy") == "BTC"  # a spot fee is paid in the asset received
    assert currency("spot", side="Sell") == "USDT"
    row = execution_row(feeCurrency="")
    del row["category"]
    fill = parse_execution_row(row, COINS, category="spot")
    assert fill is not None and fill.fee_currency == "BTC"


def test_empty_strings_and_json_numbers() -> None:
    (fill,) = parse(message("execution", execution_row(execFee="", feeCurrency=""))).events
    assert isinstance(fill, Fill) and fill.fee == D("0") and fill.fee_currency == "USDT"
    # JSON numbers (not strings) are read as Decimal from their text, never through float.
    text = message("execution", execution_row()).replace('"0.004"', "0.1").replace('"30000.5"', "30000.3")
    (fill,) = parse(text).events
    assert isinstance(fill, Fill) and fill.quantity == D("0.1") and fill.price == D("30000.3")
    assert isinstance(fill.quantity, Decimal)
    rebate = parse(message("execution", execution_row(execFee="-0.0015", isMaker=True))).events[0]
    assert isinstance(rebate, Fill) and rebate.fee == D("-0.0015") and rebate.liquidity is Liquidity.MAKER
    no_update_time = order_row(updatedTime="")
    (update,) = parse(message("order", no_update_time)).events
    assert isinstance(update, OrderUpdate) and update.ts_ms == 1700000009000  # the envelope's creationTime


def test_good_rows_are_kept_beside_a_bad_one() -> None:
    good = execution_row(execId="t-good")
    bad = execution_row(execId="t-bad", execQty="lots")
    parsed = parse(message("execution", bad, good, execution_row(symbol="XRPUSDT")))
    assert [event.trade_id for event in parsed.events if isinstance(event, Fill)] == ["t-good"]
    assert parsed.ignored == 1
    assert parsed.problem is not None and parsed.problem.startswith("BAD_ROW: execution: row 0: execQty")


@pytest.mark.parametrize(("text", "needle"), [
    ("not json", "MALFORMED"),
    ('{"topic": "order", "data": [', "MALFORMED"),
    ("", "MALFORMED"),
    ("[1, 2]", "MALFORMED"),
    ("null", "MALFORMED"),
    ("[" * 100_000, "MALFORMED"),
    ('{"topic": "order"}', "'data' is not a list"),
    ('{"topic": "order", "data": {"orderId": "x"}}', "'data' is not a list"),
    ('{"topic": "greeks", "data": []}', "UNEXPECTED_TOPIC"),
    ('{"topic": "order.weird", "data": []}', "UNEXPECTED_TOPIC"),
    ("{}", "UNEXPECTED"),
    ('{"topic": "order", "data": [[1]]}', "row 0: a row is an object"),
    ('{"topic": "order", "data": [null]}', "row 0: a row is an object"),
])
def test_malformed_messages_are_problems(text: str, needle: str) -> None:
    parsed = parse(text)
    assert parsed.problem is not None and needle in parsed.problem
    assert parsed.events == () and parsed.auth_ok is None


@pytest.mark.parametrize(("topic", "row", "needle"), [
    ("order", order_row(orderId=""), "orderId"),
    ("order", order_row(orderId=None), "orderId"),
    ("order", order_row(side="Long"), "side"),
    ("order", order_row(orderStatus="Exploded"), "UNKNOWN_STATUS"),
    ("order", order_row(cumExecQty="-1"), "cumExecQty"),
    ("order", order_row(cumExecQty="NaN"), "cumExecQty"),
    ("order", order_row(updatedTime="soon", orderStatus="Cancelled"), "updatedTime"),
    ("order", order_row(symbol=7), "symbol"),
    ("execution", execution_row(execId=""), "execId"),
    ("execution", execution_row(execQty="0"), "execQty"),
    ("execution", execution_row(execQty="1e999999"), "execQty"),
    ("execution", execution_row(execPrice=""), "execPrice"),
    ("execution", execution_row(execPrice="-3"), "execPrice"),
    ("execution", execution_row(execFee="free"), "execFee"),
    ("execution", execution_row(execTime="1700000002"), "execTime"),  # seconds, not ms
    ("execution", execution_row(execTime=True), "execTime"),
    ("execution", execution_row(isMaker="maybe"), "isMaker"),
    ("execution", execution_row(isMaker=None), "isMaker"),
    ("execution", execution_row(execType=""), "execType"),
    ("execution", execution_row(execQty=1.5), "execQty"),  # a float that slipped in is not a number here
    ("position", {"symbol": "BTCUSDT", "side": "Up", "size": "1"}, "side"),
    ("position", {"symbol": "BTCUSDT", "side": "Buy", "size": "x"}, "size"),
    ("wallet", {"coin": "USDT"}, "coin"),
    ("wallet", {"coin": [{"coin": "USDT", "walletBalance": "lots"}]}, "walletBalance"),
])
def test_bad_rows_are_problems(topic: str, row: dict[str, Any], needle: str) -> None:
    if topic == "execution" and isinstance(row.get("execQty"), float):
        parsed = parse_private_message({"topic": topic, "data": [row]}, COINS, "linear")
    else:
        parsed = parse(message(topic, row))
    assert parsed.problem is not None and parsed.problem.startswith(f"BAD_ROW: {topic}: row 0:")
    assert needle in parsed.problem
    assert parsed.events == () and parsed.positions == ()


def test_not_a_mapping_and_bad_coins_are_problems() -> None:
    assert parse_private_message(["x"], COINS, "linear").problem is not None  # type: ignore[arg-type]
    assert parse_private_message({"topic": "order", "data": []}, {}, "linear").problem is not None
    with pytest.raises(ValueError, match="category"):
        parse_private_message({}, COINS, "inverse")


def test_rest_parsers_raise_naming_the_field() -> None:
    with pytest.raises(ValueError, match="qty"):
        parse_order_row(order_row(qty="abc"), COINS)
    with pytest.raises(ValueError, match="XRPUSDT"):
        parse_order_row(order_row(symbol="XRPUSDT"), COINS)
    with pytest.raises(ValueError, match="execPrice"):
        parse_execution_row(execution_row(execPrice="0"), COINS)
    with pytest.raises(ValueError, match="XRPUSDT"):
        parse_execution_row(execution_row(symbol="XRPUSDT"), COINS)
    with pytest.raises(ValueError, match="side"):
        parse_position_row({"symbol": "BTCUSDT", "side": "", "size": "1"}, COINS)
    with pytest.raises(ValueError, match="walletBalance"):
        parse_wallet_row({"coin": [{"coin": "USDT", "walletBalance": "-"}]})
    assert coin_of({"symbol": "btcusdt"}, COINS) == "BTC"
    assert coin_of({"symbol": "XRPUSDT"}, COINS) is None and coin_of({}, COINS) is None


# --- outgoing messages -------------------------------------------------------------------------------

def test_auth_signature_known_vector() -> None:
    key, secret, expires = "fake-key-abcdef", "fake-secret-0123456789", 1700000010000
    by_hand = hmac.new(secret.encode(), b"GET/realtime1700000010000", hashlib.sha256).hexdigest()
    assert by_hand == "56f6b94afd1ef0272eca2f0416bd41ad730d44a9999dcad5eb7903a04a2a625a"
    assert auth_signature(secret, expires) == by_hand
    assert json.loads(auth_message(key, secret, expires)) == {"op": "auth", "args": [key, expires, by_hand]}
    with pytest.raises(ValueError, match="secret"):
        auth_message(key, "", expires)
    with pytest.raises(ValueError, match="expires_ms"):
        auth_message(key, secret, "1700000010000")  # type: ignore[arg-type]


def test_subscription_and_ping_messages() -> None:
    assert private_topics("linear") == ["order", "execution", "position", "wallet"]
    assert private_topics("spot") == ["order", "execution", "wallet"]
    assert json.loads(subscribe_message(private_topics("linear"))) == {
        "op": "subscribe", "args": ["order", "execution", "position", "wallet"]}
    assert json.loads(PING_MESSAGE) == {"op": "ping"}
    with pytest.raises(ValueError, match="topics"):
        subscribe_message([])
