"""state/matching.py: the paper venue's matching rules, pure and thread-free."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from state.market import TopOfBook, default_rules
from state.matching import (
    BookOrder,
    FeeSchedule,
    FillModel,
    MatchingBook,
    MatchingSettings,
    OrderRefused,
    Trade,
    book_order_from_dict,
    book_order_to_dict,
    fill_from_dict,
    fill_to_dict,
    position_from_dict,
    position_to_dict,
    slippage_vs_benchmark_bps,
    venue_order_id,
)
from state.messages import OrderRequest
from state.order import Fill, OrderUpdate
from state.rules import slipped_price
from state.types import Direction, Liquidity, OrderIntent, OrderStatus, OrderType, Side, TimeInForce

D = Decimal
T0 = 1_700_000_000_000
BTC = default_rules("BTC")  # tick 0.01, step 0.00001


def request(cid: str = "c1", *, side: Side = Side.BUY, quantity: Any = "1", price: Any = "100",
            intent: OrderIntent | None = None, ts_ms: int = T0, **kwargs: Any) -> OrderRequest:
    if intent is None:
        intent = OrderIntent.ENTRY
    return OrderRequest(client_order_id=cid, position_id="p1", coin="BTC", side=side, quantity=D(str(quantity)),
                        intent=intent, reference_price=D(str(price)), reference_ts_ms=ts_ms, **kwargs)


def limit(cid: str, side: Side, quantity: Any, price: Any, *, reference: Any = "100", **kwargs: Any) -> OrderRequest:
    return request(cid, side=side, quantity=quantity, price=reference, order_type=OrderType.LIMIT,
                   limit_price=D(str(price)), **kwargs)


def book(*, slippage: Any = "0", maker: Any = "0", taker: Any = "0", model: FillModel = FillModel.FULL,
         quote_age_ms: int = 5_000) -> MatchingBook:
    settings = MatchingSettings(slippage_bps=D(str(slippage)), fees=FeeSchedule(maker=D(str(maker)), taker=D(str(taker))),
                                fill_model=model, quote_max_age_ms=quote_age_ms)
    return MatchingBook("BTC", settings)


class Seq:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def submit(b: MatchingBook, order: OrderRequest, seq: Seq, now_ms: int = T0) -> tuple[BookOrder, list[Any]]:
    placed, step = b.submit(order, seq=seq(), now_ms=now_ms, market=BTC)
    return placed, step.events


def trade(b: MatchingBook, price: Any, quantity: Any = "100", ts_ms: int = T0 + 1000) -> list[Any]:
    return b.observe_trade(Trade(price=D(str(price)), quantity=D(str(quantity)), ts_ms=ts_ms), market=BTC).events


def fills(events: list[Any]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def statuses(events: list[Any]) -> list[str]:
    return [e.status.value if isinstance(e, OrderUpdate) else "FILL" for e in events]


# --- market orders --------------------------------------------------------------------------------


def test_market_order_without_quote_fills_at_the_slipped_reference_price_as_taker() -> None:
    b, seq = book(slippage="10", taker="0.0005"), Seq()
    placed, events = submit(b, request(price="42000.05", quantity="0.02"), seq)

    assert statuses(events) == ["ACCEPTED", "FILL"]
    (fill,) = fills(events)
    assert fill.price == slipped_price(Side.BUY, D("42000.05"), D("10"), BTC) == D("42042.06")
    assert fill.fee == D("0.02") * fill.price * D("0.0005")
    assert fill.liquidity is Liquidity.TAKER
    assert fill.trade_id == venue_order_id("c1") + "-1"
    assert placed.status is OrderStatus.FILLED and placed.benchmark == D("42000.05")


def test_market_order_fills_against_the_mid_of_a_fresh_quote() -> None:
    b, seq = book(slippage="0"), Seq()
    b.observe_quote(TopOfBook(bid=D("99.98"), bid_qty=D(1), ask=D("100.02"), ask_qty=D(1), ts_ms=T0))

    _, events = submit(b, request(price="90"), seq, now_ms=T0 + 1000)

    assert fills(events)[0].price == D("100.00")


def test_a_stale_quote_gives_way_to_a_newer_last_trade_then_to_the_reference_price() -> None:
    b, seq = book(quote_age_ms=1000), Seq()
    b.observe_quote(TopOfBook(bid=D("99.98"), bid_qty=D(1), ask=D("100.02"), ask_qty=D(1), ts_ms=T0 - 5000))
    trade(b, "101", ts_ms=T0 + 10)  # newer than the order's reference tick
    _, events = submit(b, request("c1", price="100"), seq, now_ms=T0 + 20)
    assert fills(events)[0].price == D("101")

    _, events = submit(b, request("c2", price="102", ts_ms=T0 + 50), seq, now_ms=T0 + 60)  # reference is newer
    assert fills(events)[0].price == D("102")


def test_seed_check_slippage_30_bps_averages_more_than_20_bps_from_the_mid() -> None:
    b, seq = book(slippage="30"), Seq()
    measured = []
    for n in range(100):
        mid_ticks = 4_200_000 + n * 37
        bid, ask = D(mid_ticks - 1) / 100, D(mid_ticks + 1) / 100
        now = T0 + n * 1000
        b.observe_quote(TopOfBook(bid=bid, bid_qty=D(1), ask=ask, ask_qty=D(1), ts_ms=now))
        side = Side.BUY if n % 2 == 0 else Side.SELL
        placed, events = submit(b, request(f"m{n}", side=side, price="42000", quantity="0.01", ts_ms=now), seq, now)
        (fill,) = fills(events)
        assert placed.benchmark == (bid + ask) / 2
        measured.append(slippage_vs_benchmark_bps(side, (bid + ask) / 2, fill.price))
        # the venue's sells are entries of shorts, so positions never block anything here

    average = sum(measured) / len(measured)
    assert average > 20
    assert min(measured) >= 30  # rounded to the tick against the trader: never less than asked


def test_a_price_the_fill_guard_refuses_is_invalid_price_and_places_nothing() -> None:
    b, seq = book(), Seq()
    b.observe_quote(TopOfBook(bid=D("10"), bid_qty=D(1), ask=D("10.02"), ask_qty=D(1), ts_ms=T0))  # 90 % away

    with pytest.raises(OrderRefused, match="INVALID_PRICE"):
        submit(b, request(price="100"), seq)
    assert not b.working and not b.positions


def test_a_reference_tick_older_than_the_limit_is_price_unavailable() -> None:
    b, seq = book(), Seq()
    with pytest.raises(OrderRefused, match=r"PRICE_UNAVAILABLE: reference price of BTC is 61.0s old \(limit 60s\)"):
        submit(b, request(ts_ms=T0 - 61_000), seq)


def test_prices_off_the_tick_and_quantities_off_the_step_are_refused() -> None:
    b, seq = book(), Seq()
    with pytest.raises(OrderRefused, match="limit_price 99.995 is not a multiple of the tick size 0.01"):
        submit(b, limit("l1", Side.BUY, "1", "99.995"), seq)
    with pytest.raises(OrderRefused, match="quantity 0.000001 is not a multiple of the quantity step"):
        submit(b, request(quantity="0.000001"), seq)


# --- limit orders ---------------------------------------------------------------------------------


def test_a_marketable_limit_takes_at_the_market_price_when_better_than_its_limit() -> None:
    b, seq = book(slippage="10", taker="0.0005"), Seq()
    _, events = submit(b, limit("l1", Side.BUY, "1", "101", reference="100"), seq)
    (fill,) = fills(events)
    assert fill.price == D("100.10") and fill.liquidity is Liquidity.TAKER
    assert statuses(events) == ["ACCEPTED", "FILL"]


def test_a_marketable_limit_never_fills_beyond_its_limit() -> None:
    b, seq = book(slippage="100"), Seq()  # 1 % would be 101.00
    _, events = submit(b, limit("l1", Side.BUY, "1", "100.50", reference="100"), seq)
    assert fills(events)[0].price == D("100.50")


def test_a_resting_limit_fills_as_maker_at_its_price_when_a_trade_prints_at_or_through_it() -> None:
    b, seq = book(maker="0.0002"), Seq()
    placed, events = submit(b, limit("l1", Side.BUY, "2", "99"), seq)
    assert statuses(events) == ["ACCEPTED"] and placed.working

    assert trade(b, "99.01") == []  # above a buy limit: no fill
    events = trade(b, "98.50")  # through it
    (fill,) = fills(events)
    assert (fill.price, fill.quantity, fill.liquidity) == (D("99"), D("2"), Liquidity.MAKER)
    assert fill.fee == D("2") * D("99") * D("0.0002")
    assert not b.working


def test_seed_check_ten_post_only_limits_with_a_maker_rebate_show_negative_fees() -> None:
    b, seq = book(maker="-0.0002", taker="0.0005"), Seq()
    for n in range(10):
        placed, events = submit(b, limit(f"po{n}", Side.BUY, "0.1", D("99") - n, post_only=True), seq)
        assert statuses(events) == ["ACCEPTED"], "a post-only limit below the market rests"

    events = trade(b, "90")
    got = fills(events)
    assert len(got) == 10
    assert all(f.liquidity is Liquidity.MAKER and f.fee < 0 for f in got)
    assert sum(f.fee for f in got) == sum(D("-0.0002") * D("0.1") * (D("99") - n) for n in range(10))


def test_post_only_that_would_take_is_expired_with_nothing_filled() -> None:
    b, seq = book(), Seq()
    placed, events = submit(b, limit("po", Side.BUY, "1", "100.00", reference="100", post_only=True), seq)
    assert statuses(events) == ["ACCEPTED", "EXPIRED"]
    assert placed.status is OrderStatus.EXPIRED and placed.filled_quantity == 0
    assert "POST_ONLY" in (placed.reason or "")


def test_post_only_crossing_a_fresh_quote_is_expired() -> None:
    b, seq = book(), Seq()
    b.observe_quote(TopOfBook(bid=D("99.98"), bid_qty=D(1), ask=D("100.02"), ask_qty=D(1), ts_ms=T0))
    placed, _ = submit(b, limit("po", Side.SELL, "1", "99.98", post_only=True), seq)
    assert placed.status is OrderStatus.EXPIRED
    placed, _ = submit(b, limit("po2", Side.SELL, "1", "99.99", post_only=True), seq)
    assert placed.status is OrderStatus.ACCEPTED  # between bid and ask: rests


def test_traded_volume_fills_partially_best_price_then_earliest_first_and_the_rest_keeps_resting() -> None:
    b, seq = book(model=FillModel.TRADED_VOLUME), Seq()
    submit(b, limit("early", Side.BUY, "1", "99"), seq)
    submit(b, limit("late", Side.BUY, "1", "99"), seq)
    submit(b, limit("better", Side.BUY, "0.5", "99.50"), seq)

    events = trade(b, "99", "0.8")
    assert [(f.client_order_id, f.quantity) for f in fills(events)] == [("better", D("0.5")), ("early", D("0.3"))]
    assert b.working["early"].status is OrderStatus.PARTIALLY_FILLED
    assert b.working["early"].filled_quantity == D("0.3")

    events = trade(b, "98.9", "1.5")
    assert [(f.client_order_id, f.quantity) for f in fills(events)] == [("early", D("0.7")), ("late", D("0.8"))]
    assert [f.trade_id for f in fills(events)] == [venue_order_id("early") + "-2", venue_order_id("late") + "-1"]
    assert set(b.working) == {"late"} and b.working["late"].remaining == D("0.2")


def test_full_model_fills_every_touched_order_whole_whatever_the_traded_quantity() -> None:
    b, seq = book(), Seq()
    submit(b, limit("a", Side.SELL, "3", "101", intent=OrderIntent.ENTRY), seq)
    events = trade(b, "101", "0.001")
    assert fills(events)[0].quantity == D("3")


def test_traded_volume_rounds_the_share_down_to_the_step() -> None:
    b, seq = book(model=FillModel.TRADED_VOLUME), Seq()
    submit(b, limit("a", Side.BUY, "1", "99"), seq)
    events = trade(b, "99", "0.000005")  # below one step of 0.00001
    assert events == [] and b.working["a"].filled_quantity == 0


# --- time in force --------------------------------------------------------------------------------


def test_ioc_that_cannot_fill_at_once_is_canceled() -> None:
    b, seq = book(), Seq()
    placed, events = submit(b, limit("ioc", Side.BUY, "1", "99", time_in_force=TimeInForce.IOC), seq)
    assert statuses(events) == ["ACCEPTED", "CANCELED"] and placed.filled_quantity == 0


def test_ioc_remainder_is_canceled_after_what_the_touch_could_fill() -> None:
    b, seq = book(model=FillModel.TRADED_VOLUME), Seq()
    b.observe_quote(TopOfBook(bid=D("99.98"), bid_qty=D(5), ask=D("100.02"), ask_qty=D("0.4"), ts_ms=T0))
    placed, events = submit(b, limit("ioc", Side.BUY, "1", "100.05", time_in_force=TimeInForce.IOC), seq)
    assert statuses(events) == ["ACCEPTED", "FILL", "CANCELED"]
    assert fills(events)[0].quantity == D("0.4")
    assert placed.status is OrderStatus.CANCELED and placed.filled_quantity == D("0.4")


def test_a_gtc_limit_that_took_part_of_the_touch_rests_for_the_rest() -> None:
    b, seq = book(model=FillModel.TRADED_VOLUME), Seq()
    b.observe_quote(TopOfBook(bid=D("99.98"), bid_qty=D(5), ask=D("100.02"), ask_qty=D("0.4"), ts_ms=T0))
    placed, events = submit(b, limit("gtc", Side.BUY, "1", "100.05"), seq)
    assert statuses(events) == ["ACCEPTED", "FILL"]
    assert placed.status is OrderStatus.PARTIALLY_FILLED and b.working["gtc"].remaining == D("0.6")


def test_fok_that_cannot_fill_whole_is_expired_with_nothing_filled() -> None:
    b, seq = book(), Seq()
    placed, events = submit(b, limit("fok", Side.BUY, "1", "99", time_in_force=TimeInForce.FOK), seq)
    assert statuses(events) == ["ACCEPTED", "EXPIRED"] and placed.filled_quantity == 0

    b2 = book(model=FillModel.TRADED_VOLUME)
    b2.observe_quote(TopOfBook(bid=D("99.98"), bid_qty=D(5), ask=D("100.02"), ask_qty=D("0.4"), ts_ms=T0))
    placed, events = submit(b2, limit("fok", Side.BUY, "1", "100.05", time_in_force=TimeInForce.FOK), seq)
    assert statuses(events) == ["ACCEPTED", "EXPIRED"] and placed.filled_quantity == 0 and not b2.positions


def test_fok_that_can_fill_whole_fills() -> None:
    b, seq = book(), Seq()
    placed, events = submit(b, limit("fok", Side.BUY, "1", "100.05", time_in_force=TimeInForce.FOK), seq)
    assert statuses(events) == ["ACCEPTED", "FILL"] and placed.status is OrderStatus.FILLED


# --- stops ----------------------------------------------------------------------------------------


def test_stop_market_triggers_on_the_last_trade_and_fills_as_taker_at_the_trigger() -> None:
    b, seq = book(slippage="10"), Seq()
    placed, events = submit(b, request("sm", price="100", order_type=OrderType.STOP_MARKET, stop_price=D("101")), seq)
    assert statuses(events) == ["ACCEPTED"] and not placed.triggered

    assert trade(b, "100.99") == []
    events = trade(b, "101.20")
    (fill,) = fills(events)
    assert fill.liquidity is Liquidity.TAKER
    assert fill.price == slipped_price(Side.BUY, D("101.20"), D("10"), BTC)
    assert not b.working


def test_sell_stop_market_triggers_at_or_below_the_stop() -> None:
    b, seq = book(), Seq()
    submit(b, request("e", price="100"), seq)  # a long to protect
    submit(b, request("sm", side=Side.SELL, intent=OrderIntent.EXIT, price="100", order_type=OrderType.STOP_MARKET,
                      stop_price=D("98")), seq)
    assert trade(b, "98.01") == []
    events = trade(b, "98")
    assert fills(events)[0].price == D("98") and b.position(Direction.LONG).quantity == 0


def test_a_stop_that_would_trigger_at_once_is_refused() -> None:
    b, seq = book(), Seq()
    with pytest.raises(OrderRefused, match="WOULD_TRIGGER"):
        submit(b, request("sm", price="100", order_type=OrderType.STOP_MARKET, stop_price=D("100")), seq)


def test_stop_limit_triggers_then_rests_and_fills_as_maker() -> None:
    b, seq = book(), Seq()
    submit(b, request("sl", price="100", order_type=OrderType.STOP_LIMIT, stop_price=D("101"),
                      limit_price=D("100.50")), seq)
    events = trade(b, "101", ts_ms=T0 + 1000)  # triggers; 101 is above the buy limit: rests
    assert events == [] and b.working["sl"].triggered

    events = trade(b, "100.40", ts_ms=T0 + 2000)
    (fill,) = fills(events)
    assert (fill.price, fill.liquidity) == (D("100.50"), Liquidity.MAKER)


def test_a_stop_limit_marketable_at_its_trigger_takes() -> None:
    b, seq = book(), Seq()
    submit(b, request("sl", price="100", order_type=OrderType.STOP_LIMIT, stop_price=D("101"),
                      limit_price=D("102")), seq)
    events = trade(b, "101.10")
    (fill,) = fills(events)
    assert (fill.price, fill.liquidity) == (D("101.10"), Liquidity.TAKER)


# --- reduce-only and positions --------------------------------------------------------------------


def test_reduce_only_with_nothing_to_reduce_is_refused_as_binance_2022() -> None:
    b, seq = book(), Seq()
    with pytest.raises(OrderRefused, match="REDUCE_ONLY: ReduceOnly Order is rejected"):
        submit(b, request("x", side=Side.SELL, intent=OrderIntent.EXIT), seq)
    submit(b, request("short", side=Side.SELL, intent=OrderIntent.ENTRY, quantity="1"), seq)
    with pytest.raises(OrderRefused, match="no LONG position"):  # a short does not make a long to reduce
        submit(b, request("x2", side=Side.SELL, intent=OrderIntent.EXIT), seq)


def test_reduce_only_larger_than_the_position_fills_the_position_and_the_rest_expires() -> None:
    b, seq = book(), Seq()
    submit(b, request("e", quantity="0.3"), seq)
    placed, events = submit(b, request("x", side=Side.SELL, intent=OrderIntent.EXIT, quantity="0.5"), seq)
    assert statuses(events) == ["ACCEPTED", "FILL", "EXPIRED"]
    assert fills(events)[0].quantity == D("0.3") and placed.filled_quantity == D("0.3")
    assert b.position(Direction.LONG).quantity == 0


def test_a_resting_reduce_only_order_whose_position_is_gone_expires_when_reached() -> None:
    b, seq = book(), Seq()
    submit(b, request("e", quantity="1"), seq)
    submit(b, limit("tp", Side.SELL, "1", "105", intent=OrderIntent.EXIT), seq)
    submit(b, request("x", side=Side.SELL, intent=OrderIntent.EXIT, quantity="1"), seq)  # closed at market
    events = trade(b, "105")
    assert statuses(events) == ["EXPIRED"] and not b.working


def test_positions_keep_entry_realized_pnl_and_fees() -> None:
    b, seq = book(taker="0.001"), Seq()
    submit(b, request("e1", quantity="1", price="100"), seq)
    submit(b, request("e2", quantity="1", price="110"), seq)
    submit(b, request("x", side=Side.SELL, intent=OrderIntent.EXIT, quantity="1", price="120"), seq)
    long = b.position(Direction.LONG)
    assert (long.quantity, long.entry_price, long.realized_pnl) == (D("1"), D("105"), D("15"))
    assert long.fees == D("0.1") + D("0.11") + D("0.12")


# --- cancel ---------------------------------------------------------------------------------------


def test_cancel_a_resting_order_and_an_unknown_one() -> None:
    b, seq = book(), Seq()
    submit(b, limit("l", Side.BUY, "1", "90"), seq)
    step = b.cancel("l", now_ms=T0 + 5)
    assert statuses(step.events) == ["CANCELED"] and step.orders["l"].status is OrderStatus.CANCELED
    assert not b.working
    with pytest.raises(KeyError):
        b.cancel("l", now_ms=T0 + 6)


# --- durable form ---------------------------------------------------------------------------------


def test_records_survive_their_dict_form_unchanged() -> None:
    b, seq = book(model=FillModel.TRADED_VOLUME, maker="-0.0001"), Seq()
    submit(b, request("sl", price="100", order_type=OrderType.STOP_LIMIT, stop_price=D("101"),
                      limit_price=D("100.5"), time_in_force=TimeInForce.GTC), seq)
    trade(b, "101")
    step = b.observe_trade(Trade(price=D("100.4"), quantity=D("0.3"), ts_ms=T0 + 5000), market=BTC)
    order = step.orders["sl"]
    assert book_order_from_dict(book_order_to_dict(order)) == order
    assert fill_from_dict(fill_to_dict(step.fills[0])) == step.fills[0]
    position = b.position(Direction.LONG)
    assert position_from_dict(position_to_dict(position)) == position


def test_slippage_vs_benchmark_is_positive_when_worse_for_the_trader() -> None:
    assert slippage_vs_benchmark_bps(Side.BUY, D("100"), D("100.30")) == D("30")
    assert slippage_vs_benchmark_bps(Side.SELL, D("100"), D("100.30")) == D("-30")
    with pytest.raises(ValueError, match="benchmark"):
        slippage_vs_benchmark_bps(Side.BUY, D("0"), D("1"))
